"""Admission of an embeddings request from its headers alone: a slot of its account, or 429/1302 at once.

Under a burst most requests of an account at its limit are refusals, and one event loop answers them
one after the other, so the last of a simultaneous burst waits for all those before it. Admission
therefore happens as early and as cheaply as possible:

- :func:`admit` authenticates (from the cached keys), checks the quota and takes one of the account's
  slots. It returns an :class:`Admission` (principal, slot and the request's timing, handed to the
  route through the ASGI scope under :data:`SCOPE_KEY`), a :class:`Refusal` (429/1302, already
  rendered), or ``None`` when the credential is missing or bad or the quota is spent: the route then
  answers with its own code (1000-1003, 1113), exactly as without this module.
- :func:`refusing_protocol` runs :func:`admit` in uvicorn's HTTP protocol as soon as the request's
  headers are parsed (before any ASGI task exists) and writes a refusal straight to the socket:
  about a third of the work of answering through ASGI. Admitting there, not in the task, also
  matters: the tasks of a burst only start after the whole burst is parsed, so a slot taken in the
  task would be taken too late for the requests parsed after it.
- ``app.py`` calls :func:`admit` at the ASGI entry for requests the protocol did not see (another
  HTTP implementation, a test client calling the app directly).

A slot taken here is released by the route (always, exactly once; see ``routes.py``), or, if the
request's task never runs, when the :class:`Slot` is garbage-collected.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

from starlette.types import Scope, Send

from embedding2.accounts import Principal, Slot
from embedding2.accounts.limiter import limit_error
from embedding2.errors import Embedding2Error
from embedding2.service.encoding import render_error
from embedding2.service.metrics import RequestTiming
from embedding2.service.responses import CONCURRENCY_LIMIT, JSON, new_request_id, raw_headers, retry_headers
from embedding2.service.state import ServiceState

log = logging.getLogger(__name__)

SCOPE_KEY = "embedding2.admission"
_AUTHORIZATION = b"authorization"
_STATUS_LINES = {429: b"HTTP/1.1 429 Too Many Requests\r\n"}


@dataclass
class Admission:
    """A request let in: who sent it, the slot it holds, and its timing since its headers were parsed."""

    principal: Principal
    slot: Slot
    timing: RequestTiming


@dataclass
class Refusal:
    """A rendered 429/1302 answer: its header lines (all but the server's own, e.g. ``date``) and body."""

    status: int
    header_lines: bytes  # b"name: value\r\n" for each header
    body: bytes

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as ASGI pairs."""
        pairs = (line.split(b": ", 1) for line in self.header_lines.split(b"\r\n") if line)
        return [(name, value) for name, value in pairs]


@functools.lru_cache(maxsize=256)
def _refusal_template(limit: int, retry_after_ms: int) -> tuple[int, bytes, bytes]:
    """What every refusal of an account with ``limit`` slots shares: status, fixed header lines, and the
    body up to its request id (rendered once; only the id and the timings differ per answer)."""
    error = limit_error(limit)
    fixed = retry_headers(error.code, error.http_status, retry_after_ms)
    fixed["content-type"] = JSON
    lines = b"".join(b"%s: %s\r\n" % pair for pair in raw_headers(fixed))
    body = render_error(error.code, error.message, "")
    assert body.endswith(b'""}')  # the request id is the last field
    return error.http_status, lines, body[:-2]


def _authorization(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _AUTHORIZATION:  # ASGI servers lower-case header names
            return str(value.decode("latin-1"))
    return None


def admit(state: ServiceState, scope: Scope) -> Admission | Refusal | None:
    """Let the request in with a slot of its account, refuse it (1302), or leave it to the route."""
    timing = RequestTiming()
    principal = state.local_principal
    accounts = state.accounts
    try:
        if principal is None:
            principal = accounts.authenticate(_authorization(scope))
        accounts.check_quota(principal)
    except Embedding2Error:
        return None  # the route answers 1000-1003 or 1113 with its own message
    except Exception:  # the store failed: the route meets the same fault and answers 500 with the envelope
        log.debug("admission could not authenticate; leaving the request to the route", exc_info=True)
        return None
    slot = accounts.try_slot(principal)
    timing.lap("auth")
    if slot is not None:
        return Admission(principal, slot, timing)
    return _refusal(state, principal, timing)


def _refusal(state: ServiceState, principal: Principal, timing: RequestTiming) -> Refusal:
    status, fixed, body_head = _refusal_template(principal.concurrency, state.settings.retry_after_ms)
    request_id = new_request_id()
    body = b'%s%s"}' % (body_head, request_id.encode())
    timing.finish()
    lines = b"%sx-request-id: %s\r\n%scontent-length: %d\r\n" % (
        fixed,
        request_id.encode(),
        timing.header_lines(),
        len(body),
    )
    state.metrics.observe_request("embeddings", status, CONCURRENCY_LIMIT)
    state.metrics.observe_timing(timing)
    return Refusal(status, lines, body)


async def send_refusal(send: Send, refusal: Refusal) -> None:
    await send({"type": "http.response.start", "status": refusal.status, "headers": refusal.headers})
    await send({"type": "http.response.body", "body": refusal.body})


def refusing_protocol(state: ServiceState, paths: frozenset[str]) -> type[asyncio.Protocol] | None:
    """uvicorn's httptools protocol, admitting embeddings requests as soon as their headers are parsed.

    A refusal is written straight to the socket from the parser's callback; uvicorn then discards the
    request's body, as for any request answered before its body was read. ``None`` when this uvicorn
    lacks the hooks this relies on; the ASGI entry point then admits (a little slower).
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string
    except ImportError:
        return None
    hooks = ("_start_asgi_task", "_unset_keepalive_if_required", "on_response_complete", "timeout_keep_alive_handler")
    if not all(hasattr(HttpToolsProtocol, name) for name in hooks):
        return None

    class AdmittingHttpToolsProtocol(HttpToolsProtocol):
        _completing = False  # inside _complete(): a refusal it causes loops there instead of recursing
        _complete_again = False

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            if self.transport.is_closing():  # e.g. an HTTP/1.0 refusal just closed it: nobody would get this
                return
            scope = cycle.scope
            if scope["method"] == "POST" and scope["path"] in paths:
                decision = admit(state, scope)
                if isinstance(decision, Refusal):
                    self._write_refusal(cycle, decision)
                    return
                scope[SCOPE_KEY] = decision  # None: undecided, the route authenticates and answers itself
            # a refusal earlier in the same read armed the keep-alive timer; this request is in flight
            self._unset_keepalive_if_required()
            super()._start_asgi_task(cycle, app)

        def _write_refusal(self, cycle: Any, refusal: Refusal) -> None:
            # after "Expect: 100-continue" the client may or may not send the body now: only closing the
            # connection keeps the next request from being read as this one's body
            keep_alive = cycle.keep_alive and not cycle.waiting_for_100_continue
            out = [_STATUS_LINES.get(refusal.status, b"HTTP/1.1 %d \r\n" % refusal.status)]
            for name, value in self.server_state.default_headers:
                out += [name, b": ", value, b"\r\n"]
            out.append(refusal.header_lines)
            if not keep_alive:
                out.append(b"connection: close\r\n")
            out += [b"\r\n", refusal.body]
            if self.access_log:
                self.access_logger.info(
                    '%s - "%s %s HTTP/%s" %d',
                    get_client_addr(cycle.scope),
                    cycle.scope["method"],
                    get_path_with_query_string(cycle.scope),
                    cycle.scope["http_version"],
                    refusal.status,
                )
            self.transport.write(b"".join(out))
            cycle.response_started = cycle.response_complete = True  # its body, if any, is discarded
            if not keep_alive:
                cycle.keep_alive = False
                self.transport.close()
            self._complete()

        def _complete(self) -> None:
            """uvicorn's end of a response (count it, resume reading, start the next pipelined request or
            arm the keep-alive timer), in a loop: a run of pipelined refusals must not nest one call per
            request."""
            if self._completing:
                self._complete_again = True
                return
            self._completing = True
            try:
                self._complete_again = True
                while self._complete_again:
                    self._complete_again = False
                    self.on_response_complete()
            finally:
                self._completing = False

        def on_message_complete(self) -> None:
            super().on_message_complete()
            # the body of a request answered early arrived in a later read, whose data_received disarmed
            # the keep-alive timer: with nothing in flight on this connection, arm it again
            cycle = self.cycle
            if (
                cycle is not None
                and cycle.response_complete
                and not self.pipeline
                and self.timeout_keep_alive_task is None
                and not self.transport.is_closing()
            ):
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )

    return AdmittingHttpToolsProtocol
