"""Per-account in-flight limits: a slot is taken at once or refused at once (429/1302), never queued.

:class:`Limiter` is the small interface (try-acquire, release, count) that a shared implementation,
e.g. on Redis, can serve later; :class:`InProcessLimiter` serves one server process and is safe from
threads and from asyncio tasks alike (a plain lock around a dict; nothing awaits while holding it).

A :class:`Slot` is both a sync and an async context manager and releases exactly once: on normal exit,
on an exception, on task cancellation (a client that disconnects), on an explicit :meth:`Slot.release`,
and, as a last resort, when a slot that was never entered is garbage-collected.
"""

from __future__ import annotations

import threading
import weakref
from types import TracebackType
from typing import Protocol

from embedding2.accounts.errors import LimitError


class Limiter(Protocol):
    def try_acquire(self, account_id: str, limit: int) -> bool:
        """Take one slot of ``account_id`` if fewer than ``limit`` are taken; never waits."""

    def release(self, account_id: str) -> None:
        """Give one slot back."""

    def in_flight(self, account_id: str) -> int:
        """Slots taken now."""


def limit_error(limit: int) -> LimitError:
    """The 429/1302 error of an account with all ``limit`` of its slots taken."""
    return LimitError(f"too many concurrent requests for this account (limit {limit}); retry when one finishes")


class InProcessLimiter:
    """:class:`Limiter` within one process."""

    def __init__(self) -> None:
        # re-entrant: a leaked Slot's finalizer may run (garbage collection) while this thread holds it
        self._lock = threading.RLock()
        self._taken: dict[str, int] = {}

    def try_acquire(self, account_id: str, limit: int) -> bool:
        with self._lock:
            n = self._taken.get(account_id, 0)
            if n >= limit:
                return False
            self._taken[account_id] = n + 1
            return True

    def release(self, account_id: str) -> None:
        with self._lock:
            n = self._taken.get(account_id, 0) - 1
            if n > 0:
                self._taken[account_id] = n
            else:
                self._taken.pop(account_id, None)
                if n < 0:
                    raise RuntimeError(f"slot of account {account_id} released more often than acquired")

    def in_flight(self, account_id: str) -> int:
        with self._lock:
            return self._taken.get(account_id, 0)


class Slot:
    """One in-flight request of one account; use as ``with`` or ``async with``."""

    __slots__ = ("__weakref__", "_release", "account_id")

    def __init__(self, limiter: Limiter, account_id: str) -> None:
        self.account_id = account_id
        # finalize runs its callback at most once: explicit release, context exit or garbage collection
        self._release = weakref.finalize(self, limiter.release, account_id)

    @classmethod
    def acquire(cls, limiter: Limiter, account_id: str, limit: int) -> Slot:
        """Take a slot now, or raise :class:`LimitError` (1302) now."""
        if not limiter.try_acquire(account_id, limit):
            raise limit_error(limit)
        return cls(limiter, account_id)

    @property
    def released(self) -> bool:
        return not self._release.alive

    def release(self) -> None:
        """Give the slot back; calling it again does nothing."""
        self._release()

    def __repr__(self) -> str:
        return f"Slot(account_id={self.account_id!r}, released={self.released})"

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    async def __aenter__(self) -> Slot:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
