"""When to retry, how long to wait, and how many requests to keep in flight (shared by both clients).

Retried: no answer at all (connection errors, timeouts), 429 except 1113 (1302: the account's
in-flight limit, 1305: the service's queue is full) and 5xx. Never retried: 1113 (out of quota) and
every other 4xx. A service's ``x-should-retry: true|false`` header overrides that, as in the official
SDKs. The wait is ``Retry-After`` (``retry-after-ms`` or ``retry-after``, capped) plus exponential
backoff with full jitter: ``uniform(0, min(max_delay, initial_delay * 2**retry))``.

:class:`AdaptiveLimit` is the job's concurrency, additive increase / multiplicative decrease: each
1302/1305 answer cuts it by a quarter (at most once per ``cooldown_s``), each success adds
``1/limit`` (about one more request per round of answers), never above the caller's ceiling. A job
whose ceiling is above the account's tier therefore settles just under the tier instead of paying
a rejected request for every slot over it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from embedding2.client.errors import (
    APIConnectionError,
    APIStatusError,
    ClientError,
    ConcurrencyLimitError,
    QuotaExceededError,
    ServerOverloadedError,
)


def retry_after_s(headers: dict[str, str]) -> float | None:
    """Seconds the service asked the client to wait (``retry-after-ms`` first, then ``retry-after``)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: not sent by the contract's services; fall back to backoff
        if seconds >= 0:
            return seconds
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """Retry decisions and waits; ``max_retries`` counts retries after the first attempt."""

    max_retries: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def should_retry(self, exc: ClientError, retries_done: int) -> bool:
        if retries_done >= self.max_retries:
            return False
        if isinstance(exc, APIConnectionError):
            return True
        if not isinstance(exc, APIStatusError) or exc.status is None or isinstance(exc, QuotaExceededError):
            return False
        hint = exc.headers.get("x-should-retry")
        if hint == "false":
            return False
        if hint == "true":
            return True
        return exc.status == 429 or exc.status >= 500

    def delay(self, exc: ClientError, retries_done: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retries_done + 1``."""
        draw = (rng or random).uniform
        backoff = draw(0.0, min(self.max_delay, self.initial_delay * (2.0**retries_done)))
        after = retry_after_s(exc.headers) if isinstance(exc, APIStatusError) else None
        if after is None:
            return backoff
        return min(after, self.max_retry_after) + backoff


def is_congestion(exc: BaseException) -> bool:
    """A signal to send fewer requests at once (the account's limit or the service's queue)."""
    return isinstance(exc, (ConcurrencyLimitError, ServerOverloadedError))


class AdaptiveLimit:
    """AIMD concurrency limit (not thread-safe by itself: the clients' gates hold a lock around it)."""

    def __init__(self, ceiling: int, *, decrease: float = 0.75, cooldown_s: float = 0.2) -> None:
        if ceiling < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.ceiling = ceiling
        self._limit = float(ceiling)
        self._decrease = decrease
        self._cooldown_s = cooldown_s
        self._last_cut = -1e9
        self.cuts = 0

    @property
    def current(self) -> int:
        return max(1, int(self._limit))

    def on_success(self) -> None:
        self._limit = min(float(self.ceiling), self._limit + 1.0 / self._limit)

    def on_congestion(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._last_cut < self._cooldown_s:
            return
        self._last_cut = now
        self._limit = max(1.0, self._limit * self._decrease)
        self.cuts += 1


__all__ = ["AdaptiveLimit", "RetryPolicy", "is_congestion", "retry_after_s"]
