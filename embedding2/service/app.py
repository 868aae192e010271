"""The app factory: routes, the contract's error envelope for every error, and an orderly shutdown.

``create_app(state)`` takes a ready :class:`ServiceState` (engine and accounts already open) and
returns the ASGI app. Every answer the app gives that is not a 2xx carries the contract's envelope
``{"error": {"code": ..., "message": ...}}``, unknown paths (404) and wrong methods (405) included.

On shutdown (after the server has stopped accepting and finished the requests in flight) the
lifespan hook flushes and closes the accounts store, then the engine, when ``owns_resources`` is set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

import embedding2
from embedding2.errors import INTERNAL
from embedding2.service import admission, routes
from embedding2.service.responses import error_response
from embedding2.service.state import ServiceState

log = logging.getLogger(__name__)


async def close_state(state: ServiceState) -> None:
    """Flush the ledger and close the store, then the engine (each once, even if the other fails)."""
    state.readiness.shutting_down = True
    try:
        await asyncio.to_thread(state.accounts.close)
    except Exception:
        log.exception("closing the accounts store failed")
    try:
        await asyncio.to_thread(state.embedder.close)
    except Exception:
        log.exception("closing the engine failed")


class ServiceApp:
    """The ASGI entry point: ``POST`` to an embeddings path goes straight to its handler; everything else
    (models, health, readiness, metrics, errors, lifespan) through the FastAPI app.

    The embeddings handler catches every error itself, so FastAPI's middleware stack and dependency
    machinery would add nothing to it but time: skipping them doubles how many requests per second
    the event loop can admit or refuse (429), which is what keeps refusals fast under a burst. Before
    it, ``admission.admit`` takes the account's slot or answers 429/1302 with the least work possible,
    unless uvicorn's HTTP protocol has done so already (``admission.refusing_protocol``).
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state: ServiceState = app.state.service
        self._fast_paths = frozenset(routes.EMBEDDINGS_PATHS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self._fast_paths:
            if admission.SCOPE_KEY not in scope:  # not seen by the HTTP protocol (see admission.py)
                decision = admission.admit(self.state, scope)
                if isinstance(decision, admission.Refusal):  # 429/1302 at once, the body left unread
                    await admission.send_refusal(send, decision)
                    return
                if decision is not None:
                    scope[admission.SCOPE_KEY] = decision
            scope["app"] = self.app
            response = await routes.embeddings(Request(scope, receive, send))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(state: ServiceState, *, owns_resources: bool = True) -> ServiceApp:
    """The embedding2 HTTP API over ``state``; closes it on shutdown when ``owns_resources``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_resources:
            await close_state(state)

    app = FastAPI(
        title="embedding2",
        version=embedding2.__version__,
        description="Self-hosted Embedding-2 API (see docs/api.md)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.service = state

    for path in routes.EMBEDDINGS_PATHS:
        app.add_api_route(path, routes.embeddings, methods=["POST"], include_in_schema=False)
    for path in routes.MODELS_PATHS:
        app.add_api_route(path, routes.list_models, methods=["GET"], include_in_schema=False)
    app.add_api_route("/health", routes.health, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ready", routes.ready, methods=["GET"], include_in_schema=False)
    app.add_api_route("/metrics", routes.metrics, methods=["GET"], include_in_schema=False)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else "internal error"
        response = error_response(str(status), f"{detail}: {request.method} {request.url.path}")
        response.status_code = status
        state.metrics.observe_request("other", status, str(status))
        return response

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        state.metrics.observe_request("other", 500, INTERNAL)
        return error_response(INTERNAL, "internal error")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
    return ServiceApp(app)
