"""Dynamic batching across concurrent callers.

Callers submit tokenized texts and get one future per text. One worker thread forms batches and
runs the backend:

- texts are grouped by *length bucket* (their length rounded up to a granularity), and every text is
  always padded to its own bucket, never to a batchmate's length: a text's input tensor row is the
  same whoever shares the batch, which is what makes vectors bit-identical across batch compositions;
- a batch takes the bucket of the oldest waiting text (first come, first served) and fills it up to
  ``max_batch_tokens`` padded tokens and ``max_batch_size`` texts;
- the queue is bounded in tokens: a submission that would overflow it is refused at once with
  :class:`OverloadedError` (all of its texts or none), never left to grow;
- futures cancelled by their caller before their batch starts are skipped;
- when a batch fails, every future in it gets the exception (never left hanging), and the worker
  carries on; the output count is checked against the input count.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from embedding2.errors import EngineError, OverloadedError

RunBatch = Callable[[np.ndarray, np.ndarray], np.ndarray]


def bucket_length(n_tokens: int, granularity: int) -> int:
    """Padded length for a text of ``n_tokens``: multiples of ``granularity`` up to 128 tokens,
    of ``4 * granularity`` above (long texts waste little by padding, short ones would)."""
    g = granularity if n_tokens <= 128 else 4 * granularity
    return max(g, -(-n_tokens // g) * g)


@dataclass
class _Item:
    ids: np.ndarray
    bucket: int
    seq: int
    future: Future[np.ndarray]


@dataclass
class BatchStats:
    """What one forward pass did (for metrics)."""

    size: int
    padded_len: int
    tokens: int  # real tokens
    queue_wait_s: float  # oldest item's wait
    forward_s: float


@dataclass
class SchedulerCounters:
    batches: int = 0
    texts: int = 0
    tokens: int = 0
    rejected: int = 0
    last_batches: deque[BatchStats] = field(default_factory=lambda: deque(maxlen=256))


class BatchScheduler:
    def __init__(
        self,
        run_batch: RunBatch,
        *,
        pad_id: int,
        max_batch_tokens: int = 16384,
        max_batch_size: int = 256,
        max_queue_tokens: int = 131072,
        granularity: int = 8,
        batch_wait_s: float = 0.0,
        on_batch: Callable[[BatchStats], None] | None = None,
        name: str = "embedding2-batcher",
    ) -> None:
        self._run = run_batch
        self.pad_id = pad_id
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_queue_tokens = max_queue_tokens
        self.granularity = granularity
        self.batch_wait_s = batch_wait_s
        self._on_batch = on_batch
        self._buckets: dict[int, deque[_Item]] = {}
        self._enqueued_at: dict[int, float] = {}
        self._queued_tokens = 0
        self._queued_texts = 0
        self._seq = 0
        self._cond = threading.Condition()
        self._closed = False
        self.counters = SchedulerCounters()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ submission
    @property
    def queue_depth(self) -> int:
        """Texts waiting (not yet in a running batch)."""
        return self._queued_texts

    @property
    def queued_tokens(self) -> int:
        return self._queued_tokens

    def submit(self, sequences: Sequence[np.ndarray]) -> list[Future[np.ndarray]]:
        """Queue token-id sequences; one future per sequence resolving to its pooled vector."""
        tokens = sum(bucket_length(len(s), self.granularity) for s in sequences)
        with self._cond:
            if self._closed:
                raise EngineError("the engine is shut down")
            if self._queued_tokens and self._queued_tokens + tokens > self.max_queue_tokens:
                self.counters.rejected += len(sequences)
                raise OverloadedError(f"the engine queue is full ({self._queued_tokens} tokens waiting); retry shortly")
            futures: list[Future[np.ndarray]] = []
            now = time.perf_counter()
            for ids in sequences:
                fut: Future[np.ndarray] = Future()
                bucket = bucket_length(len(ids), self.granularity)
                self._seq += 1
                self._buckets.setdefault(bucket, deque()).append(_Item(ids, bucket, self._seq, fut))
                self._enqueued_at[self._seq] = now
                futures.append(fut)
            self._queued_tokens += tokens
            self._queued_texts += len(sequences)
            self._cond.notify()
        return futures

    # ------------------------------------------------------------------ worker
    def _take_batch(self) -> list[_Item]:
        """Called with the lock held and at least one item queued."""
        bucket = min((q[0].seq, b) for b, q in self._buckets.items() if q)[1]
        queue = self._buckets[bucket]
        limit = max(1, min(self.max_batch_size, self.max_batch_tokens // bucket))
        batch: list[_Item] = []
        while queue and len(batch) < limit:
            batch.append(queue.popleft())
        if not queue:
            del self._buckets[bucket]
        self._queued_tokens -= bucket * len(batch)
        self._queued_texts -= len(batch)
        return batch

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and self._queued_texts == 0:
                    self._cond.wait()
                if self._queued_texts == 0 and self._closed:
                    return
                if self.batch_wait_s > 0 and self._queued_texts < self.max_batch_size:
                    self._cond.wait(self.batch_wait_s)
                batch = self._take_batch()
                started = time.perf_counter()
                waits = [started - self._enqueued_at.pop(item.seq, started) for item in batch]
            live = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if live:
                self._run_live(live, max(waits), started)

    def _run_live(self, live: list[_Item], queue_wait: float, started: float) -> None:
        padded = live[0].bucket
        ids = np.full((len(live), padded), self.pad_id, dtype=np.int64)
        lengths = np.empty(len(live), dtype=np.int64)
        for row, item in enumerate(live):
            ids[row, : len(item.ids)] = item.ids
            lengths[row] = len(item.ids)
        try:
            out = self._run(ids, lengths)
            if out.shape[0] != len(live):
                raise EngineError(f"backend returned {out.shape[0]} vectors for {len(live)} texts")
        except BaseException as exc:  # every waiting caller must hear about it
            err = exc if isinstance(exc, Exception) else EngineError(repr(exc))
            for item in live:
                item.future.set_exception(err)
            return
        for row, item in enumerate(live):
            item.future.set_result(out[row])
        stats = BatchStats(len(live), padded, int(lengths.sum()), queue_wait, time.perf_counter() - started)
        self.counters.batches += 1
        self.counters.texts += len(live)
        self.counters.tokens += stats.tokens
        self.counters.last_batches.append(stats)
        if self._on_batch is not None:
            with contextlib.suppress(Exception):  # metrics must never break inference
                self._on_batch(stats)

    # ------------------------------------------------------------------ shutdown
    def close(self, wait: bool = True) -> None:
        """Stop accepting; finish what is queued (``wait``) or fail it."""
        with self._cond:
            self._closed = True
            if not wait:
                for queue in self._buckets.values():
                    for item in queue:
                        item.future.set_exception(EngineError("the engine is shut down"))
                self._buckets.clear()
                self._queued_texts = 0
                self._queued_tokens = 0
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()
