"""The usage ledger's group commit: one writer thread turns many requests' rows into few COMMITs.

A caller hands a row over and waits; the writer takes every row queued (optionally waiting up to
``commit_interval_s`` after the first one for more; at most ``max_batch``), writes them in ONE
transaction and wakes each waiter only after the COMMIT has returned, so a row acknowledged to a
caller is durable (see :mod:`embedding2.accounts.sqlite` for what durable means there). While one group
commits, the next one gathers, so under load the fsync cost is shared without any added wait.

A failed COMMIT fails exactly the waiters of that group (:class:`LedgerError`, HTTP 500) and the writer
carries on; a waiter is never left hanging, and :meth:`Ledger.close` writes everything queued before
it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from embedding2.accounts.store import Remaining, Store, UsageRow
from embedding2.errors import EngineError

log = logging.getLogger(__name__)

Done = Callable[[BaseException | None], None]


class LedgerError(EngineError):
    """The usage row could not be committed (database error): the request is failed, not served free."""


@dataclass
class _Item:
    row: UsageRow
    done: Done


_STOP = object()


class Ledger:
    """Group-committing writer of :class:`UsageRow` into a :class:`Store`."""

    def __init__(
        self,
        store: Store,
        commit_interval_s: float = 0.0,
        max_batch: int = 1024,
        on_commit: Callable[[dict[str, Remaining]], None] | None = None,
    ) -> None:
        self._store = store
        self._interval = max(0.0, commit_interval_s)
        self._max_batch = max(1, max_batch)
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.commits = 0  # transactions committed
        self.rows = 0  # rows written (duplicates of a request_id not counted)

    def submit(self, row: UsageRow, done: Done) -> None:
        """Queue ``row``; ``done(None)`` runs (in the writer thread) after its COMMIT, ``done(exc)`` on failure."""
        with self._lock:
            if self._closed:
                raise LedgerError("the usage ledger is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="embedding2-ledger", daemon=True)
                self._thread.start()
            self._queue.put(_Item(row, done))

    def record_sync(self, row: UsageRow) -> None:
        """Write ``row`` and return once it is committed (blocks the calling thread)."""
        finished = threading.Event()
        outcome: list[BaseException | None] = []

        def done(exc: BaseException | None) -> None:
            outcome.append(exc)
            finished.set()

        self.submit(row, done)
        finished.wait()
        if outcome[0] is not None:
            raise outcome[0]

    async def record(self, row: UsageRow) -> None:
        """Write ``row`` and return once it is committed, without blocking the event loop.

        If the awaiting task is cancelled, the row is still written: the work was done, so it is billed.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def settle(exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)

        def done(exc: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(settle, exc)

        self.submit(row, done)
        await future

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit everything queued, then stop the writer. Later submissions raise :class:`LedgerError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)
            if thread.is_alive():
                log.error("usage ledger writer did not finish within %s s", timeout)

    # the writer thread
    def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        batch = [first]
        stop = False
        deadline = time.monotonic() + self._interval
        while len(batch) < self._max_batch:
            wait = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            assert isinstance(item, _Item)
            batch.append(item)
        return batch, stop

    def _commit(self, batch: list[_Item]) -> None:
        try:
            inserted, remaining = self._store.record_usage([item.row for item in batch])
        except BaseException as exc:  # a waiter must never hang: fail this group, keep serving
            log.exception("usage ledger commit of %d rows failed", len(batch))
            error = LedgerError(f"could not record usage: {type(exc).__name__}")
            error.__cause__ = exc
            for item in batch:
                _call(item.done, error)
            return
        self.commits += 1
        self.rows += sum(inserted)
        if self._on_commit is not None and remaining:
            try:
                self._on_commit(remaining)
            except Exception:
                log.exception("usage ledger on_commit callback failed")
        for item in batch:
            _call(item.done, None)

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is _STOP:
                break
            assert isinstance(item, _Item)
            batch, stop = self._gather(item)
            self._commit(batch)
        # drain anything queued after the stop marker was taken (submit refuses new rows by then)
        leftovers = []
        while True:
            try:
                extra = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(extra, _Item):
                leftovers.append(extra)
        if leftovers:
            self._commit(leftovers)


def _call(done: Done, exc: BaseException | None) -> None:
    try:
        done(exc)
    except Exception:
        log.exception("usage ledger waiter callback failed")
