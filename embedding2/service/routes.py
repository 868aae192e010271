"""The route handlers: embeddings (Zhipu and OpenAI paths), models, health, readiness, metrics.

One embeddings request, in order (each stage timed, see ``metrics.py``):

    auth (key or JWT -> principal) -> quota (429/1113) -> the account's slot (429/1302 at once)
       (these three are done by ``admission.py`` as soon as the headers are parsed, and here only for a
       request it did not decide)
    -> read the body (size cap) and parse it (1210/1211/1213/1214/1261 before tokenizing)
    -> tokenize + token limits off the event loop (1214/1261) -> engine queue (429/1305 at once)
    -> forward passes (the futures are cancelled if the client goes away) -> finish + encode off the loop
    -> ledger row committed -> response -> slot released (always, exactly once)

A request that fails at any stage is not billed: the ledger row is written only after the vectors
exist, and the response is sent only after the row is committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future
from typing import Any

import numpy as np
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from embedding2.accounts import Principal, UsageRecord
from embedding2.engine.embedder import PreparedRequest
from embedding2.errors import INTERNAL, MALFORMED, Embedding2Error, InputError
from embedding2.models.registry import SERVED_MODELS
from embedding2.service.admission import SCOPE_KEY, Admission
from embedding2.service.encoding import render_embeddings, render_json
from embedding2.service.metrics import CONTENT_TYPE, RequestTiming
from embedding2.service.responses import exception_response, header_safe, json_response, new_request_id
from embedding2.service.schemas import EmbeddingRequest, RequestLimits, parse_embedding_request
from embedding2.service.state import ServiceState

log = logging.getLogger(__name__)

EMBEDDINGS_PATHS = ("/api/paas/v4/embeddings", "/v1/embeddings")
MODELS_PATHS = ("/v1/models", "/api/paas/v4/models")


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


async def read_body(request: Request, cap: int) -> bytes:
    """The whole body, refusing (1210) past ``cap`` bytes, by Content-Length or while streaming."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InputError("invalid Content-Length header", code=MALFORMED) from None
        if size > cap:
            raise InputError(f"the request body has {size} bytes, over the limit of {cap} bytes", code=MALFORMED)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise InputError(f"the request body is over the limit of {cap} bytes", code=MALFORMED)
        chunks.append(chunk)
    return b"".join(chunks)


async def _wait_for_disconnect(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so the next message is that)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _await_engine(request: Request, futures: list[Future[np.ndarray]]) -> list[np.ndarray]:
    """The pooled vectors; cancels the engine futures if the client disconnects or the task is cancelled."""
    gathered = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    waiting: set[asyncio.Future[Any]] = {gathered, watcher}
    try:
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if gathered in done:
            return list(gathered.result())
        raise ClientGone()
    except BaseException:
        for f in futures:
            f.cancel()
        gathered.cancel()
        raise
    finally:
        watcher.cancel()


def _authenticate(state: ServiceState, request: Request) -> Principal:
    if state.local_principal is not None:  # --no-auth
        return state.local_principal
    return state.accounts.authenticate(request.headers.get("authorization"))


class _Context:
    """What the handler learns as it goes, for the response and the metrics."""

    __slots__ = ("request_id", "response_id", "timing")

    def __init__(self, timing: RequestTiming | None = None) -> None:
        self.timing = timing or RequestTiming()
        self.response_id = new_request_id()
        self.request_id = self.response_id  # the client's request_id once the body is parsed


async def embeddings(request: Request) -> Response:
    """``POST /api/paas/v4/embeddings`` and ``POST /v1/embeddings``.

    Every answer carries the request id and the stage timings; the response is built once, with all its
    headers (this path also answers the 429 refusals of a burst, so it is kept lean).
    """
    state = _state(request)
    metrics = state.metrics
    admission: Admission | None = request.scope.pop(SCOPE_KEY, None)  # see admission.py
    ctx = _Context(admission.timing if admission is not None else None)
    code = "ok"
    body: bytes | None = None
    error: Embedding2Error | None = None
    metrics.in_flight.inc()
    try:
        body = await _embeddings(state, request, ctx, admission)
    except (ClientGone, ClientDisconnect):
        code = "499"
    except Embedding2Error as exc:
        code = exc.code
        if exc.http_status >= 500:  # a fault of this server (ledger, engine, master key): details go to the log
            log.error("request %s failed: %s %s", ctx.response_id, exc.code, exc.message, exc_info=exc)
            exc = Embedding2Error("internal error; the request was not billed", exc.code)
        error = exc
    except Exception:
        log.exception("internal error in request %s", ctx.response_id)
        code = INTERNAL
        error = Embedding2Error("internal error; the request was not billed", INTERNAL)
    finally:
        metrics.in_flight.dec()
        if admission is not None:  # released already on every path through _embeddings; this is the backstop
            admission.slot.release()
    ctx.timing.finish()
    headers = ctx.timing.headers()
    request_id = header_safe(ctx.request_id)
    if body is not None:
        headers["x-request-id"] = request_id
        response = json_response(body, 200, headers)
    elif error is not None:
        response = exception_response(
            error, request_id=request_id, retry_after_ms=state.settings.retry_after_ms, headers=headers
        )
    else:  # 499 (nginx's "client closed request"): nobody reads it; it is counted in the metrics
        headers["x-request-id"] = request_id
        response = Response(status_code=499, headers=headers)
    metrics.observe_request("embeddings", response.status_code, code)
    metrics.observe_timing(ctx.timing)
    return response


async def _embeddings(state: ServiceState, request: Request, ctx: _Context, admission: Admission | None) -> bytes:
    """The response body of a successful request; raises on any failure (nothing billed then)."""
    settings = state.settings
    accounts = state.accounts
    embedder = state.embedder
    timing = ctx.timing
    if admission is not None:  # authenticated and given a slot when its headers arrived
        principal, slot = admission.principal, admission.slot
    else:
        principal = _authenticate(state, request)
        accounts.check_quota(principal)
        timing.lap("auth")
        slot = accounts.slot(principal)
    async with slot:
        raw = await read_body(request, settings.max_body_bytes)
        req = await _parse(raw, state.limits)
        if req.request_id:
            ctx.request_id = req.request_id
        timing.lap("parse")
        prepared = await asyncio.to_thread(
            embedder.prepare, req.input, model=req.model, dimensions=req.dimensions, input_type=req.input_type
        )
        timing.lap("tokenize")
        futures = embedder.submit(prepared)
        timing.engine_started()
        state.metrics.attribution.watch(futures, timing)
        pooled = await _await_engine(request, futures)
        timing.engine_finished()
        body, total_tokens = await asyncio.to_thread(_finish_and_render, state, prepared, pooled, req, ctx)
        timing.lap("encode")
        await accounts.record(
            UsageRecord(
                request_id=ledger_id(req, ctx.response_id),
                account_id=principal.account_id,
                key_id=principal.key_id,
                model=req.model,
                tokens=total_tokens,
                created_at=time.time(),
            )
        )
        timing.lap("ledger")
        state.metrics.tokens.labels(req.model).inc(total_tokens)
        state.metrics.texts.labels(req.model).inc(len(req.input))
        return body


def _finish_and_render(
    state: ServiceState, prepared: PreparedRequest, pooled: list[np.ndarray], req: EmbeddingRequest, ctx: _Context
) -> tuple[bytes, int]:
    """Normalise and adapt the pooled vectors, then write the response body (worker thread)."""
    result = state.embedder.finish(prepared, pooled)
    body = render_embeddings(
        result.vectors,
        model=req.model,
        encoding_format=req.encoding_format,
        total_tokens=result.total_tokens,
        response_id=ctx.response_id,
        created=int(time.time()),
        request_id=ctx.request_id,
    )
    return body, result.total_tokens


def ledger_id(req: EmbeddingRequest, response_id: str) -> str:
    """The ledger's key: unique per request even when a client reuses its ``request_id``.

    ``<client request_id>:<response id>`` when the client sent one (so that usage can be looked up by
    the client's id), else the response id alone.
    """
    return f"{req.request_id}:{response_id}" if req.request_id else response_id


async def _parse(raw: bytes, limits: RequestLimits) -> EmbeddingRequest:
    if len(raw) > 64 * 1024:  # big bodies are parsed off the loop
        return await asyncio.to_thread(parse_embedding_request, raw, limits)
    return parse_embedding_request(raw, limits)


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: each served id with its dimensions, limits and backing model."""
    state = _state(request)
    spec = state.embedder.spec
    data = []
    for served in SERVED_MODELS.values():
        data.append(
            {
                "id": served.id,
                "object": "model",
                "created": int(state.started_at),
                "owned_by": "embedding2",
                "dimensions": list(served.dimensions),
                "default_dimensions": served.default_dimensions,
                "max_item_tokens": state.limits.item_tokens(served),  # what this deployment accepts
                "contract_max_item_tokens": served.max_item_tokens,
                "max_request_tokens": served.max_request_tokens,
                "max_items": min(state.settings.max_items, served.max_items or state.settings.max_items),
                "backing_model": spec.name,
                "native_dimensions": spec.native_dim,
            }
        )
    state.metrics.observe_request("models", 200, "ok")
    return json_response(render_json({"object": "list", "data": data}))


async def health(request: Request) -> Response:
    """``GET /health``: liveness (the process answers)."""
    return json_response(b'{"status":"ok"}')


async def ready(request: Request) -> Response:
    """``GET /ready``: readiness, a real forward pass through the engine (cached briefly)."""
    state = _state(request)
    result = await state.readiness.check()
    body = {
        "status": "ready" if result.ready else "not ready",
        "detail": result.detail,
        "model": state.embedder.spec.name,
        "probe_ms": round(result.latency_ms, 2),
    }
    status = 200 if result.ready else 503
    state.metrics.observe_request("ready", status, "ok" if result.ready else "503")
    return json_response(render_json(body), status)


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus text format."""
    return Response(_state(request).metrics.render(), media_type=CONTENT_TYPE)
