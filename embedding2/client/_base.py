"""What the sync and async clients share: configuration, the request body, the answer's decoding, the job plan.

Configuration, first found wins:

- ``api_key``: the argument, then ``ZAI_API_KEY`` (zai-sdk's name), then ``ZHIPUAI_API_KEY`` (zhipuai's);
  none at all is allowed (an embedding2 server started with ``--no-auth``);
- ``base_url``: the argument, then ``ZAI_BASE_URL``, then ``ZHIPUAI_BASE_URL``, then the hosted
  service, ``https://open.bigmodel.cn/api/paas/v4`` (an embedding2 server: ``http://HOST:PORT/api/paas/v4``,
  or ``.../v1``).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import ValidationError

from embedding2.client.cache import EmbeddingCache
from embedding2.client.errors import APIResponseValidationError, from_response
from embedding2.client.planning import Job, LongText, job_limits
from embedding2.client.progress import PRICE_PER_MILLION_TOKENS
from embedding2.client.retry import RetryPolicy
from embedding2.client.tokens import TokenCounter, load_token_counter
from embedding2.client.types import EmbeddingsResponse
from embedding2.models.spec import InputType

DEFAULT_BASE_URL = "https://open.bigmodel.cn/api/paas/v4"
API_KEY_ENV = ("ZAI_API_KEY", "ZHIPUAI_API_KEY")
BASE_URL_ENV = ("ZAI_BASE_URL", "ZHIPUAI_BASE_URL")
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
DEFAULT_MAX_RETRIES = 3  # embeddings.create, as the zai/zhipuai SDKs
DEFAULT_JOB_RETRIES = 8  # each request of embed_many
DEFAULT_MAX_CONCURRENCY = 16  # under the smallest tier's 50 with a wide margin
DEFAULT_BATCH_ITEMS = 256


def _version() -> str:
    try:
        return metadata.version("embedding2")
    except metadata.PackageNotFoundError:
        return "0"


def resolve_api_key(api_key: str | None) -> str | None:
    if api_key is not None:
        return api_key
    for name in API_KEY_ENV:
        value = os.environ.get(name)
        if value:
            return value
    return None


def resolve_base_url(base_url: str | httpx.URL | None) -> str:
    if base_url is None:
        for name in BASE_URL_ENV:
            value = os.environ.get(name)
            if value:
                base_url = value
                break
    return str(base_url or DEFAULT_BASE_URL).rstrip("/")


def request_body(
    *,
    model: str,
    input: str | Sequence[str],
    dimensions: int | None = None,
    encoding_format: str | None = None,
    user: str | None = None,
    request_id: str | None = None,
    input_type: InputType | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> bytes:
    """The JSON body of ``POST /embeddings`` (fields left as ``None`` are not sent)."""
    if isinstance(input, Sequence) and not isinstance(input, (str, list)):
        input = list(input)  # a tuple, or another sequence of strings
    body: dict[str, Any] = {"model": model, "input": input}  # anything else: the service judges it
    optional = {
        "dimensions": dimensions,
        "encoding_format": encoding_format,
        "user": user,
        "request_id": request_id,
        "input_type": input_type,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if extra_body:
        body.update(extra_body)
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _payload(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer; a non-2xx answer is raised as its typed exception."""
    if not response.is_success:
        raise from_response(response)
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise APIResponseValidationError(
            f"the service answered {response.status_code} with a body that is not JSON", status=response.status_code
        ) from exc
    if not isinstance(payload, dict):
        raise APIResponseValidationError("the service answered JSON that is not an object", status=response.status_code)
    return payload


def parse_vectors(response: httpx.Response, n: int) -> tuple[np.ndarray, int]:
    """The (n, dims) float32 vectors of an answer in input order, and its billed tokens."""
    payload = _payload(response)
    status = response.status_code
    try:
        data = payload["data"]
        usage = payload.get("usage") or {}
        billed = int(usage.get("total_tokens", 0))
        if len(data) != n:
            raise APIResponseValidationError(f"the service answered {len(data)} vectors for {n} inputs", status=status)
        rows: list[np.ndarray | None] = [None] * n
        for pos, item in enumerate(data):
            index = item.get("index", pos)
            emb = item["embedding"]
            if isinstance(emb, str):
                vec = np.frombuffer(base64.b64decode(emb), dtype="<f4").astype(np.float32)
            else:
                vec = np.asarray(emb, dtype=np.float32)
            if not 0 <= index < n or rows[index] is not None:
                raise APIResponseValidationError(f"the service answered a bad or repeated index {index}", status=status)
            rows[index] = vec
        vectors = np.stack([r for r in rows if r is not None])
    except APIResponseValidationError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise APIResponseValidationError(
            f"the service's answer is not the contract's shape: {type(exc).__name__}: {exc}", status=status
        ) from exc
    if vectors.ndim != 2 or not np.isfinite(vectors).all():
        raise APIResponseValidationError("the service answered vectors of unequal sizes or non-finite values")
    return vectors, billed


def parse_create(response: httpx.Response) -> EmbeddingsResponse:
    """The typed :class:`EmbeddingsResponse` of an answer (a non-2xx answer is raised as its exception)."""
    payload = _payload(response)
    try:
        return EmbeddingsResponse.model_validate(payload)
    except ValidationError as exc:
        raise APIResponseValidationError(
            f"the service's answer is not the contract's shape: {exc.error_count()} error(s)",
            status=response.status_code,
        ) from exc


@dataclass
class JobReport:
    """What the last ``embed_many`` did (``client.last_job``)."""

    texts: int
    distinct_texts: int
    chunked_texts: int
    cached_pieces: int
    requests_planned: int
    requests_sent: int = 0
    retries: int = 0
    congestion_answers: int = 0  # 429/1302 and 429/1305 received
    splits: int = 0  # requests refused as too long and sent again in halves
    planned_tokens: int = 0
    billed_tokens: int = 0
    cost_yuan: float = 0.0
    max_in_flight: int = 0
    final_concurrency: int = 0
    elapsed_s: float = 0.0


class ClientCore:
    """The state and job planning of a client; :class:`Client` and :class:`AsyncClient` add the I/O."""

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
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        price_per_million_tokens: float = PRICE_PER_MILLION_TOKENS,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.api_key = resolve_api_key(api_key)
        self.base_url = resolve_base_url(base_url)
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self.max_retries = max_retries
        self.retry_policy = RetryPolicy(max_retries=max_retries)
        self.max_concurrency = max_concurrency
        self.price_per_million_tokens = price_per_million_tokens
        self._tokenizer_arg = tokenizer
        self._cache_dir = cache_dir
        self._tokenizer: TokenCounter | None = None
        self._tokenizer_lock = threading.Lock()
        self.last_job: JobReport | None = None
        self.headers = {"User-Agent": f"embedding2-client/{_version()}", "Content-Type": "application/json"}
        if self.api_key:
            self.headers["Authorization"] = f"Bearer {self.api_key}"
        if default_headers:
            self.headers.update(default_headers)

    @property
    def embeddings_url(self) -> str:
        return f"{self.base_url}/embeddings"

    @property
    def tokenizer(self) -> TokenCounter:
        """The token counter that plans ``embed_many`` (resolved on first use; may ask ``GET /models``)."""
        with self._tokenizer_lock:
            if self._tokenizer is None:
                self._tokenizer = load_token_counter(
                    self._tokenizer_arg, base_url=self.base_url, cache_dir=self._cache_dir, headers=self.headers
                )
            return self._tokenizer

    def count_tokens(self, texts: Sequence[str], input_type: InputType | None = None) -> list[int]:
        """Tokens of each text as ``embed_many`` counts them (exact against an embedding2 server)."""
        return self.tokenizer.count(list(texts), input_type)

    def plan(
        self,
        texts: Sequence[str],
        *,
        model: str,
        dimensions: int | None,
        input_type: InputType | None,
        batch_tokens: int | None,
        batch_items: int | None,
        long_text: LongText,
        overlap: int,
        cache: EmbeddingCache | None,
    ) -> Job:
        """Plan one ``embed_many`` (CPU and the cache file only: the async client runs it in a thread)."""
        counter = self.tokenizer
        limits = job_limits(model, counter, batch_tokens=batch_tokens, batch_items=batch_items)
        return Job(
            texts,
            counter=counter,
            limits=limits,
            model=model,
            dimensions=dimensions,
            input_type=input_type,
            long_text=long_text,
            overlap=overlap,
            cache=cache,
        )

    def new_report(self, job: Job) -> JobReport:
        return JobReport(
            texts=job.n,
            distinct_texts=job.distinct,
            chunked_texts=job.chunked,
            cached_pieces=job.cached_pieces,
            requests_planned=len(job.batches),
            planned_tokens=job.total_tokens,
        )


__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "ClientCore",
    "JobReport",
    "parse_create",
    "parse_vectors",
    "request_body",
    "resolve_api_key",
    "resolve_base_url",
]
