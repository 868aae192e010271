"""BatchScheduler on its own: bucketing, budgets, overload, cancellation, failures, shutdown.

The run_batch function here is the scheduler's input, not the thing under test: it records the
shapes it is given and returns each row's token sum, so results can be checked exactly.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

from embedding2.engine.scheduler import BatchScheduler, bucket_length
from embedding2.errors import EngineError, OverloadedError


class Recorder:
    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        self.gate.wait()
        self.shapes.append(ids.shape)
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in lengths.tolist():
            raise RuntimeError("backend exploded")
        sums = np.array([ids[i, :n].sum() for i, n in enumerate(lengths)], dtype=np.float32)
        return sums[:, None].repeat(2, axis=1)


def seq(n: int, start: int = 1) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int64)


def test_bucket_length() -> None:
    assert [bucket_length(n, 8) for n in (1, 8, 9, 128, 129, 160, 161, 512)] == [8, 8, 16, 128, 160, 160, 192, 512]


def test_results_follow_their_inputs_and_buckets_never_mix() -> None:
    rec = Recorder()
    rec.gate.clear()  # hold the worker so that everything queues up first
    s = BatchScheduler(rec, pad_id=0, max_batch_tokens=64, granularity=8)
    seqs = [seq(n, start=n) for n in (3, 20, 5, 7, 17, 2, 30)]
    futures = s.submit(seqs)
    rec.gate.set()
    assert [f.result()[0] for f in futures] == [float(x.sum()) for x in seqs]
    for batch_size, padded in rec.shapes:
        assert padded in (8, 24, 32) and batch_size * padded <= 64
    s.close()


def test_budget_limits_batch_size() -> None:
    rec = Recorder()
    rec.gate.clear()
    s = BatchScheduler(rec, pad_id=0, max_batch_tokens=32, max_batch_size=3, granularity=8)
    futs = s.submit([seq(4) for _ in range(10)])
    rec.gate.set()
    for f in futs:
        f.result()
    assert all(b <= 3 for b, _ in rec.shapes) and sum(b for b, _ in rec.shapes) == 10
    s.close()


def test_full_queue_refuses_at_once_all_or_nothing() -> None:
    rec = Recorder()
    rec.gate.clear()
    s = BatchScheduler(rec, pad_id=0, max_queue_tokens=64, granularity=8)
    first = s.submit([seq(8)])  # taken by the worker (blocked at the gate) or queued
    time.sleep(0.05)
    queued = s.submit([seq(8)] * 8)  # 64 tokens: fills the queue
    t0 = time.perf_counter()
    with pytest.raises(OverloadedError) as info:
        s.submit([seq(8), seq(8)])
    assert time.perf_counter() - t0 < 0.05 and info.value.code == "1305"
    assert s.queue_depth == 8  # nothing of the refused submission was queued
    rec.gate.set()
    for f in first + queued:
        f.result()
    s.close()


def test_cancelled_futures_are_skipped() -> None:
    rec = Recorder()
    rec.gate.clear()
    s = BatchScheduler(rec, pad_id=0, granularity=8)
    blocker = s.submit([seq(50)])
    time.sleep(0.05)
    futs = s.submit([seq(3), seq(4), seq(5)])
    assert futs[1].cancel()
    rec.gate.set()
    assert futs[0].result()[0] == 6 and futs[2].result()[0] == 15
    with pytest.raises(CancelledError):
        futs[1].result()
    blocker[0].result()
    assert sum(b for b, _ in rec.shapes) == 3  # the cancelled text never reached the backend
    s.close()


def test_a_failing_batch_fails_every_waiter_and_the_worker_survives() -> None:
    rec = Recorder(fail_on=5)
    rec.gate.clear()
    s = BatchScheduler(rec, pad_id=0, granularity=8)
    bad = s.submit([seq(5), seq(6)])  # same bucket, same batch
    rec.gate.set()
    for f in bad:
        with pytest.raises(RuntimeError, match="exploded"):
            f.result(timeout=5)
    assert s.submit([seq(4)])[0].result(timeout=5)[0] == 10
    s.close()


def test_wrong_output_count_is_an_engine_error() -> None:
    s = BatchScheduler(lambda ids, lengths: np.zeros((1, 2), np.float32), pad_id=0, granularity=8)
    futs = s.submit([seq(3), seq(4)])
    with pytest.raises(EngineError):
        futs[0].result(timeout=5)
    s.close()


def test_close_finishes_queued_work_then_refuses() -> None:
    rec = Recorder(delay=0.01)
    s = BatchScheduler(rec, pad_id=0, max_batch_size=1, granularity=8)
    futs = s.submit([seq(3) for _ in range(5)])
    s.close(wait=True)
    assert all(f.done() and f.result()[0] == 6 for f in futs)
    with pytest.raises(EngineError):
        s.submit([seq(3)])


def test_oldest_bucket_goes_first() -> None:
    rec = Recorder()
    rec.gate.clear()
    s = BatchScheduler(rec, pad_id=0, granularity=8)
    s.submit([seq(100)])  # the worker takes this and waits at the gate
    time.sleep(0.05)
    long_f = s.submit([seq(40)])
    short_f = s.submit([seq(3)])
    rec.gate.set()
    long_f[0].result()
    short_f[0].result()
    assert rec.shapes[1][1] == 40 and rec.shapes[2][1] == 8
    s.close()
