"""What one running service holds: its settings, the engine, the accounts, metrics and readiness.

:class:`ServiceState` is built by the server (or a test) and handed to ``create_app``; the route
handlers find it on ``request.app.state.service``. Nothing here is global.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from embedding2.accounts import Accounts, Principal
from embedding2.engine.embedder import Embedder
from embedding2.errors import Embedding2Error
from embedding2.service.config import ServiceSettings
from embedding2.service.metrics import ServiceMetrics
from embedding2.service.schemas import RequestLimits

READY_TEXT = "ok"


@dataclass
class ReadyResult:
    ready: bool
    checked_at: float
    latency_ms: float
    detail: str


class Readiness:
    """``GET /ready``: a real forward pass through the engine, cached for a second or two.

    Concurrent probes share one forward pass; a probe that fails or takes longer than the timeout
    answers not-ready (503) until the next one succeeds.
    """

    def __init__(self, embedder: Embedder, *, cache_s: float, timeout_s: float) -> None:
        self._embedder = embedder
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        self._last: ReadyResult | None = None
        self._running: asyncio.Task[ReadyResult] | None = None
        self.shutting_down = False

    async def _probe(self) -> ReadyResult:
        t0 = time.perf_counter()
        try:
            # model=None: the backing model's own vector; one short text is a real, cheap forward pass
            res = await asyncio.wait_for(self._embedder.aembed([READY_TEXT], model=None), self._timeout_s)
            ok = res.vectors.shape[0] == 1 and bool((res.vectors == res.vectors).all())
            detail = "ready" if ok else "the engine returned an invalid vector"
        except TimeoutError:
            ok, detail = False, f"the engine did not answer within {self._timeout_s:g} s"
        except Embedding2Error as exc:
            ok, detail = False, f"{exc.code}: {exc.message}"
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        return ReadyResult(ok, time.monotonic(), (time.perf_counter() - t0) * 1000, detail)

    async def check(self) -> ReadyResult:
        if self.shutting_down:
            return ReadyResult(False, time.monotonic(), 0.0, "shutting down")
        last = self._last
        if last is not None and time.monotonic() - last.checked_at < self._cache_s:
            return last
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._probe())
        result = await asyncio.shield(self._running)
        self._last = result
        return result


@dataclass
class ServiceState:
    """Everything the handlers need; owned (and closed) by whoever built it."""

    settings: ServiceSettings
    embedder: Embedder
    accounts: Accounts
    metrics: ServiceMetrics
    readiness: Readiness
    local_principal: Principal | None = None  # under --no-auth: the principal of every request
    started_at: float = field(default_factory=time.time)
    limits: RequestLimits = field(init=False)

    def __post_init__(self) -> None:
        self.limits = RequestLimits(
            max_items=self.settings.max_items,
            chars_per_token=self.settings.chars_per_token_bound,
            backing_max_tokens=self.embedder.spec.max_tokens,
        )
