"""The asyncio client: ``await AsyncClient(...).embeddings.create(...)`` and ``await ....embed_many(texts)``.

The same surface and the same job (:class:`embedding2.client.planning.Job`) as :class:`embedding2.client.Client`;
requests run as tasks on one ``httpx.AsyncClient``. Planning (tokenizing, the cache file) runs in a
worker thread so that the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping, Sequence
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


class AsyncEmbeddings:
    """``client.embeddings`` of :class:`AsyncClient`: ``await create(model=..., input=...)``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
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
        """Embed ``input`` in one request (see :meth:`embedding2.client.Client.embeddings.create`)."""
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
        response = await self._client._post(body, self._client.retry_policy, headers=extra_headers, timeout=timeout)
        return parse_create(response)


class _AsyncGate:
    """Admits at most ``limit.current`` requests at once."""

    def __init__(self, limit: AdaptiveLimit) -> None:
        self.limit = limit
        self._cond = asyncio.Condition()
        self.in_flight = 0
        self.max_in_flight = 0

    async def acquire(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.limit.current)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    async def release(self, *, ok: bool, congested: bool = False) -> None:
        async with self._cond:
            self.in_flight -= 1
            if ok:
                self.limit.on_success()
            elif congested:
                self.limit.on_congestion()
            self._cond.notify_all()


class AsyncClient(ClientCore):
    """An asyncio client of the Embedding-2 API; the arguments are :class:`embedding2.client.Client`'s."""

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
        http_client: httpx.AsyncClient | None = None,
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
        self._http = http_client or httpx.AsyncClient(
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=max(20, max_concurrency)),
        )
        self.embeddings = AsyncEmbeddings(self)

    # ------------------------------------------------------------------ transport
    async def _send(
        self, body: bytes, *, headers: Mapping[str, str] | None = None, timeout: float | httpx.Timeout | None = None
    ) -> httpx.Response:
        merged = {**self.headers, **(headers or {})}
        try:
            return await self._http.post(
                self.embeddings_url,
                content=body,
                headers=merged,
                timeout=timeout if timeout is not None else self.timeout,
            )
        except httpx.TransportError as exc:
            raise from_transport(exc, self.embeddings_url) from exc

    async def _post(
        self,
        body: bytes,
        policy: RetryPolicy,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> httpx.Response:
        retries = 0
        while True:
            try:
                response = await self._send(body, headers=headers, timeout=timeout)
                if response.is_success:
                    return response
                raise from_response(response)
            except ClientError as exc:
                if not policy.should_retry(exc, retries):
                    raise
                await asyncio.sleep(policy.delay(exc, retries))
                retries += 1

    # ------------------------------------------------------------------ embed_many
    async def embed_many(
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
        """Embed any number of texts (see :meth:`embedding2.client.Client.embed_many`)."""
        store, owned = await asyncio.to_thread(open_cache, cache)
        started = time.perf_counter()
        try:
            job = await asyncio.to_thread(
                self.plan,
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
                await self._run_job(
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
            return await asyncio.to_thread(job.result)
        finally:
            if owned and store is not None:
                store.close()

    async def _run_job(
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
        gate = _AsyncGate(AdaptiveLimit(ceiling))
        queue: deque[Batch] = deque(job.batches)

        async def send(batch: Batch) -> None:
            body = request_body(
                model=model,
                input=job.texts_of(batch),
                dimensions=dimensions,
                encoding_format=encoding_format,
                input_type=input_type,
            )
            retries = 0
            while True:
                await gate.acquire()
                try:
                    report.requests_sent += 1
                    response = await self._send(body, timeout=timeout)
                    vectors, billed = parse_vectors(response, len(batch.pieces))
                except ClientError as exc:
                    congested = is_congestion(exc)
                    await gate.release(ok=False, congested=congested)
                    halves = job.split(batch) if isinstance(exc, TokenLimitError) else None
                    if halves is not None:
                        report.splits += 1
                        for half in halves:
                            await send(half)
                        return
                    if not policy.should_retry(exc, retries):
                        raise
                    report.retries += 1
                    report.congestion_answers += int(congested)
                    await asyncio.sleep(policy.delay(exc, retries))
                    retries += 1
                    continue
                except BaseException:
                    await asyncio.shield(gate.release(ok=False))
                    raise
                await gate.release(ok=True)
                pairs = job.complete(batch, vectors, billed)
                if store is not None and pairs:
                    await asyncio.to_thread(store.put_many, pairs)
                bar.advance(batch.tokens, billed)
                return

        async def worker() -> None:
            while queue:
                await send(queue.popleft())

        n_workers = min(ceiling, len(job.batches))
        tasks = [asyncio.create_task(worker()) for _ in range(n_workers)]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()  # the first worker's error, if any, is raised here
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            report.max_in_flight = gate.max_in_flight
            report.final_concurrency = gate.limit.current

    # ------------------------------------------------------------------ lifetime
    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["AsyncClient", "AsyncEmbeddings"]
