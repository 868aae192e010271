"""Prometheus metrics of the service, in one registry per app (``GET /metrics``), and per-request timing.

What is measured, and where:

- requests by endpoint, HTTP status and contract code; requests in flight; tokens and texts served;
- per-stage latency histograms of each embeddings request (``auth``, ``parse``, ``tokenize``, ``queue``,
  ``inference``, ``encode``, ``ledger``, ``total``), the same figures that go back to the client in the
  ``x-*-ms`` and ``Server-Timing`` headers;
- the engine: queue depth (texts and padded tokens waiting), and for every forward pass its size, real
  and padded tokens, the oldest item's queue wait and the forward time (from the Embedder's
  ``on_batch`` callback).

Per-request ``queue``/``inference`` split: the engine's futures do not say which forward pass served
them, so :class:`BatchAttribution` notes, in the engine's worker thread, which requests' futures were
completed by the batch that ``on_batch`` reports next (the scheduler completes a batch's futures and then
reports it, in that thread). A request's inference time is the sum of the forward times of the batches
that served it; its queue time is the rest of its time inside the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from embedding2.engine.scheduler import BatchStats

STAGES = ("auth", "parse", "tokenize", "queue", "inference", "encode", "ledger", "total")
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass
class RequestTiming:
    """Stage durations of one request, in seconds."""

    started: float = field(default_factory=time.perf_counter)
    stages: dict[str, float] = field(default_factory=dict)
    _mark: float = 0.0
    _engine_started: float = 0.0
    _forward_s: float = 0.0
    _batches: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._mark = self.started

    def lap(self, stage: str) -> None:
        """Close ``stage`` now: it lasted since the previous lap."""
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + (now - self._mark)
        self._mark = now

    def engine_started(self) -> None:
        self._engine_started = time.perf_counter()
        self._mark = self._engine_started

    def engine_finished(self) -> None:
        """Split the time since :meth:`engine_started` into queue and inference."""
        now = time.perf_counter()
        inside = now - self._engine_started
        inference = min(self._forward_s, inside)
        self.stages["inference"] = inference
        self.stages["queue"] = inside - inference
        self._mark = now

    def add_batch(self, stats: BatchStats) -> None:  # engine worker thread
        if id(stats) not in self._batches:
            self._batches.add(id(stats))
            self._forward_s += stats.forward_s

    def finish(self) -> None:
        self.stages["total"] = time.perf_counter() - self.started

    def headers(self) -> dict[str, str]:
        """``x-<stage>-ms`` headers and one ``Server-Timing`` header."""
        out = {f"x-{name}-ms": f"{secs * 1000:.2f}" for name, secs in self.stages.items()}
        out["server-timing"] = ", ".join(f"{name};dur={secs * 1000:.2f}" for name, secs in self.stages.items())
        return out

    def header_lines(self) -> bytes:
        """The same headers as :meth:`headers`, as HTTP/1.1 header lines (for answers written raw)."""
        durations = [f"{secs * 1000:.2f}" for secs in self.stages.values()]
        each = "".join(f"x-{name}-ms: {ms}\r\n" for name, ms in zip(self.stages, durations, strict=True))
        timing = ", ".join(f"{name};dur={ms}" for name, ms in zip(self.stages, durations, strict=True))
        return f"{each}server-timing: {timing}\r\n".encode()


class BatchAttribution:
    """Tells each request which forward passes served it (see the module docstring)."""

    def __init__(self) -> None:
        self._pending: list[RequestTiming] = []
        self._worker: int | None = None

    def watch(self, futures: list[Future[Any]], timing: RequestTiming) -> None:
        def done(f: Future[Any]) -> None:
            if self._worker is not None and threading.get_ident() != self._worker:
                return  # completed outside the worker (cancelled, or already done): no batch to attribute
            if not f.cancelled() and f.exception() is None:
                self._pending.append(timing)

        for f in futures:
            f.add_done_callback(done)

    def on_batch(self, stats: BatchStats) -> None:  # engine worker thread
        self._worker = threading.get_ident()
        pending, self._pending = self._pending, []
        for timing in pending:
            timing.add_batch(stats)


class ServiceMetrics:
    """Every metric of one app, in its own registry (so that several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "embedding2_requests", "HTTP requests answered", ["endpoint", "status", "code"], registry=r
        )
        self.in_flight = Gauge("embedding2_requests_in_flight", "embeddings requests being served", registry=r)
        self.stage_seconds = Histogram(
            "embedding2_request_stage_seconds",
            "time spent in each stage of an embeddings request",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("embedding2_tokens_served", "tokens embedded and billed", ["model"], registry=r)
        self.texts = Counter("embedding2_texts_served", "texts embedded", ["model"], registry=r)
        self.queue_depth = Gauge("embedding2_engine_queue_texts", "texts waiting in the engine queue", registry=r)
        self.queue_tokens = Gauge(
            "embedding2_engine_queue_tokens", "padded tokens waiting in the engine queue", registry=r
        )
        self.batch_size = Histogram(
            "embedding2_batch_size", "texts per forward pass", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "embedding2_batch_tokens", "real tokens per forward pass", buckets=_TOKEN_BUCKETS, registry=r
        )
        self.batch_padded_tokens = Histogram(
            "embedding2_batch_padded_tokens", "padded tokens per forward pass", buckets=_TOKEN_BUCKETS, registry=r
        )
        self.batch_queue_wait = Histogram(
            "embedding2_batch_queue_wait_seconds",
            "queue wait of the oldest text of each forward pass",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_forward = Histogram(
            "embedding2_batch_forward_seconds", "time of each forward pass", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.attribution = BatchAttribution()
        # labelled children, looked up once: ``labels()`` costs a lock and a tuple build on every call
        self._request_children: dict[tuple[str, int, str], Any] = {}
        self._stage_children = {stage: self.stage_seconds.labels(stage) for stage in STAGES}

    def bind_engine(self, queue_depth: Callable[[], float], queued_tokens: Callable[[], float]) -> None:
        self.queue_depth.set_function(queue_depth)
        self.queue_tokens.set_function(queued_tokens)

    def on_batch(self, stats: BatchStats) -> None:
        """The Embedder's ``on_batch`` callback (engine worker thread)."""
        self.attribution.on_batch(stats)
        self.batch_size.observe(stats.size)
        self.batch_tokens.observe(stats.tokens)
        self.batch_padded_tokens.observe(stats.size * stats.padded_len)
        self.batch_queue_wait.observe(stats.queue_wait_s)
        self.batch_forward.observe(stats.forward_s)

    def observe_request(self, endpoint: str, status: int, code: str) -> None:
        key = (endpoint, status, code)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children.setdefault(key, self.requests.labels(endpoint, str(status), code))
        child.inc()

    def observe_timing(self, timing: RequestTiming) -> None:
        children = self._stage_children
        for stage, secs in timing.stages.items():
            child = children.get(stage)
            if child is None:
                child = children.setdefault(stage, self.stage_seconds.labels(stage))
            child.observe(secs)

    def render(self) -> bytes:
        return generate_latest(self.registry)
