"""The blocking client: ``Client(...).embeddings.create(...)`` and ``Client(...).embed_many(texts)``.

``embed_many`` sends the job's requests from a pool of threads (one ``httpx.Client``, whose connection
pool is thread-safe), at most ``max_concurrency`` at once, fewer while the service answers 1302/1305
(see :mod:`embedding2.client.retry`). The job itself (splitting, chunking, the cache, the order) is
:class:`embedding2.client.planning.Job`, shared with :class:`embedding2.client.AsyncClient`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np

from embedding2.client._base import (
    DEFAULT_BATCH_ITEMS,
    DEFAULT_JOB_RETRIES,
    DEFAULT_MAX_RETRIES,
    ClientCore,
    JobReport,
    parse_create,
    parse_vectors,
    request_body,
)
from embedding2.client.cache import EmbeddingCache, open_cache
from embedding2.client.errors import ClientError, TokenLimitError, from_response, from_transport
from embedding2.client.planning import Batch, Job, LongText
from embedding2.client.progress import Progress
from embedding2.client.retry import AdaptiveLimit, RetryPolicy, is_congestion
from embedding2.client.tokens import TokenCounter
from embedding2.client.types import EmbeddingsResponse
from embedding2.models.spec import InputType


class Embeddings:
    """``client.embeddings``: the official SDKs' resource, ``create(model=..., input=...)``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        *,
        input: str | Sequence[str],
        model: str,
        dimensions: int | None = None,
        encoding_format: Literal["float", "base64"] | None = None,
        user: str | None = None,
        request_id: str | None = None,
        input_type: InputType | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> EmbeddingsResponse:
        """Embed ``input`` in one request (retried like the official SDKs: ``max_retries``, default 3).

        Nothing is split or checked locally: the service's answer, or its error as a typed exception.
        ``input_type`` (``query``/``document``) is an embedding2 extension; other services ignore it.
        """
        body = request_body(
            model=model,
            input=input,
            dimensions=dimensions,
            encoding_format=encoding_format,
            user=user,
            request_id=request_id,
            input_type=input_type,
            extra_body=extra_body,
        )
        response = self._client._post(body, self._client.retry_policy, headers=extra_headers, timeout=timeout)
        return parse_create(response)


class _Gate:
    """Admits at most ``limit.current`` requests at once (threads wait on a condition)."""

    def __init__(self, limit: AdaptiveLimit) -> None:
        self.limit = limit
        self._cond = threading.Condition()
        self.in_flight = 0
        self.max_in_flight = 0

    def acquire(self, stop: threading.Event) -> bool:
        with self._cond:
            while self.in_flight >= self.limit.current:
                if stop.is_set():
                    return False
                self._cond.wait(0.1)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return True

    def release(self, *, ok: bool, congested: bool = False) -> None:
        with self._cond:
            self.in_flight -= 1
            if ok:
                self.limit.on_success()
            elif congested:
                self.limit.on_congestion()
            self._cond.notify_all()


class Client(ClientCore):
    """A blocking client of the Embedding-2 API (an embedding2 server or the hosted service).

    ``Client(api_key=None, base_url=None, *, timeout=600 s, max_retries=3, default_headers=None,
    tokenizer=None, cache_dir=None, max_concurrency=16, http_client=None)``: see ``docs/client.md``.
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | httpx.URL | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        tokenizer: str | Path | TokenCounter | None = None,
        cache_dir: str | Path | None = None,
        max_concurrency: int = 16,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            api_key,
            base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            tokenizer=tokenizer,
            cache_dir=cache_dir,
            max_concurrency=max_concurrency,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=max(20, max_concurrency)),
        )
        self.embeddings = Embeddings(self)

    # ------------------------------------------------------------------ transport
    def _send(
        self, body: bytes, *, headers: Mapping[str, str] | None = None, timeout: float | httpx.Timeout | None = None
    ) -> httpx.Response:
        """One POST; transport errors come out as the SDK's exceptions, answers as they are."""
        merged = {**self.headers, **(headers or {})}
        try:
            return self._http.post(
                self.embeddings_url,
                content=body,
                headers=merged,
                timeout=timeout if timeout is not None else self.timeout,
            )
        except httpx.TransportError as exc:
            raise from_transport(exc, self.embeddings_url) from exc

    def _post(
        self,
        body: bytes,
        policy: RetryPolicy,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> httpx.Response:
        """POST with retries; returns a 2xx answer or raises the last error."""
        retries = 0
        while True:
            try:
                response = self._send(body, headers=headers, timeout=timeout)
                if response.is_success:
                    return response
                raise from_response(response)
            except ClientError as exc:
                if not policy.should_retry(exc, retries):
                    raise
                time.sleep(policy.delay(exc, retries))
                retries += 1

    # ------------------------------------------------------------------ embed_many
    def embed_many(
        self,
        texts: Sequence[str],
        *,
        model: str = "embedding-2",
        dimensions: int | None = None,
        input_type: InputType | None = None,
        batch_tokens: int | None = 8192,
        batch_items: int | None = DEFAULT_BATCH_ITEMS,
        max_concurrency: int | None = None,
        long_text: LongText = "error",
        overlap: int = 64,
        cache: str | Path | EmbeddingCache | None = None,
        progress: bool | None = None,
        max_retries: int = DEFAULT_JOB_RETRIES,
        encoding_format: Literal["float", "base64"] = "base64",
        timeout: float | httpx.Timeout | None = None,
    ) -> np.ndarray:
        """Embed any number of texts: float32 array of shape (len(texts), dims), in input order.

        The job is split into requests within the model's limits (items <= 512 tokens, <= 8,192 tokens
        a request for embedding-2; ``batch_tokens``/``batch_items`` tighten them), counted with the
        client's tokenizer; identical texts are sent once; ``cache`` hits are never sent. Requests run
        concurrently (``max_concurrency``, default the client's), each retried on 429/1302/1305, 5xx and
        connection errors with backoff and jitter (``max_retries`` times). A text over the per-item
        limit raises :class:`TokenLimitError` before anything is sent, unless ``long_text="chunk"``:
        then it is embedded as overlapping windows (``overlap`` tokens) averaged by their token counts.
        """
        store, owned = open_cache(cache)
        started = time.perf_counter()
        try:
            job = self.plan(
                texts,
                model=model,
                dimensions=dimensions,
                input_type=input_type,
                batch_tokens=batch_tokens,
                batch_items=batch_items,
                long_text=long_text,
                overlap=overlap,
                cache=store,
            )
            report = self.new_report(job)
            self.last_job = report
            bar = Progress(
                job.total_tokens,
                show=progress,
                texts=job.n,
                cached=job.cached_pieces,
                price_per_million=self.price_per_million_tokens,
            )
            try:
                self._run_job(
                    job,
                    report,
                    bar,
                    store,
                    model=model,
                    dimensions=dimensions,
                    input_type=input_type,
                    encoding_format=encoding_format,
                    ceiling=max_concurrency or self.max_concurrency,
                    policy=RetryPolicy(max_retries=max_retries),
                    timeout=timeout,
                )
            finally:
                bar.close()
                report.billed_tokens = bar.billed_tokens
                report.cost_yuan = bar.cost_yuan
                report.elapsed_s = time.perf_counter() - started
            return job.result()
        finally:
            if owned and store is not None:
                store.close()

    def _run_job(
        self,
        job: Job,
        report: JobReport,
        bar: Progress,
        store: EmbeddingCache | None,
        *,
        model: str,
        dimensions: int | None,
        input_type: InputType | None,
        encoding_format: str,
        ceiling: int,
        policy: RetryPolicy,
        timeout: float | httpx.Timeout | None,
    ) -> None:
        if not job.batches:
            return
        gate = _Gate(AdaptiveLimit(ceiling))
        queue: deque[Batch] = deque(job.batches)
        queue_lock = threading.Lock()
        report_lock = threading.Lock()
        stop = threading.Event()

        def send(batch: Batch) -> None:
            body = request_body(
                model=model,
                input=job.texts_of(batch),
                dimensions=dimensions,
                encoding_format=encoding_format,
                input_type=input_type,
            )
            retries = 0
            while True:
                if not gate.acquire(stop):
                    return
                try:
                    with report_lock:
                        report.requests_sent += 1
                    response = self._send(body, timeout=timeout)
                    vectors, billed = parse_vectors(response, len(batch.pieces))
                except ClientError as exc:
                    congested = is_congestion(exc)
                    gate.release(ok=False, congested=congested)
                    halves = job.split(batch) if isinstance(exc, TokenLimitError) else None
                    if halves is not None:
                        with report_lock:
                            report.splits += 1
                        for half in halves:
                            send(half)
                        return
                    if stop.is_set() or not policy.should_retry(exc, retries):
                        raise
                    with report_lock:
                        report.retries += 1
                        report.congestion_answers += int(congested)
                    stop.wait(policy.delay(exc, retries))
                    retries += 1
                    continue
                gate.release(ok=True)
                pairs = job.complete(batch, vectors, billed)
                if store is not None:
                    store.put_many(pairs)
                bar.advance(batch.tokens, billed)
                return

        def worker() -> None:
            while not stop.is_set():
                with queue_lock:
                    if not queue:
                        return
                    batch = queue.popleft()
                send(batch)

        n_workers = min(ceiling, len(job.batches))
        pool = ThreadPoolExecutor(n_workers, thread_name_prefix="embedding2-client")
        futures: list[Future[None]] = [pool.submit(worker) for _ in range(n_workers)]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:
                f.result()  # the first worker's error, if any, is raised here
        except BaseException:
            stop.set()  # the other workers finish the request they are in, then stop
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            report.max_in_flight = gate.max_in_flight
            report.final_concurrency = gate.limit.current

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Client", "Embeddings"]
