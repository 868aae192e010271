"""Embedder: texts in, float32 L2-normalised vectors and exact token counts out (sync and async).

    emb = Embedder()                                  # e5-small on ONNX Runtime, from settings
    res = emb.embed(["你好", "hello"])                 # embedding-2: 1024 dims
    res.vectors.shape, res.token_counts                 # (2, 1024), [5, 5]
    await emb.aembed(["..."], model="embedding-3", dimensions=256)

Every call goes through the shared :class:`BatchScheduler`, so concurrent callers (threads or
coroutines) are batched together. Tokenization runs in the calling thread (``aembed`` moves it to
a worker thread so that the event loop never tokenizes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedding2.engine.adapter import adapt_dimensions, l2_normalize
from embedding2.engine.backends import Backend, create_backend
from embedding2.engine.scheduler import BatchScheduler, BatchStats
from embedding2.engine.tokenization import TextTokenizer, TokenizedText
from embedding2.errors import INVALID_FIELD, TOO_LONG, InputError
from embedding2.models.folder import load_spec
from embedding2.models.registry import resolve_model_folder, served_model
from embedding2.models.spec import InputType, ModelSpec
from embedding2.settings import Settings, load_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: np.ndarray  # (n, dims) float32, L2-normalised
    token_counts: list[int]  # per text, special tokens and prefix included

    @property
    def total_tokens(self) -> int:
        return sum(self.token_counts)


@dataclass(frozen=True)
class PreparedRequest:
    """A validated, tokenized request, ready to queue (what the service checks limits on)."""

    items: list[TokenizedText]
    dimensions: int | None

    @property
    def token_counts(self) -> list[int]:
        return [item.n_tokens for item in self.items]


class Embedder:
    """In-process embedding engine for one backing model."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        settings: Settings | None = None,
        on_batch: Any = None,
        **overrides: Any,
    ) -> None:
        if settings is None:
            settings = load_settings(**overrides)
        elif overrides:
            settings = settings.model_copy(update=overrides)
        if model is not None:
            settings = settings.model_copy(update={"model": str(model)})
        self.settings = settings
        folder = resolve_model_folder(settings.model, settings.cache_dir)
        self.spec: ModelSpec = load_spec(folder, name=str(settings.model))
        self.tokenizer = TextTokenizer(self.spec)
        self.backend: Backend = create_backend(self.spec, settings)
        pad_id = self._pad_id()
        self.scheduler = BatchScheduler(
            self.backend.forward,
            pad_id=pad_id,
            max_batch_tokens=settings.batch_token_budget,
            max_batch_size=settings.max_batch_size,
            max_queue_tokens=settings.max_queue_tokens,
            granularity=settings.length_bucket,
            batch_wait_s=settings.batch_wait_ms / 1000.0,
            on_batch=on_batch,
        )

    def _pad_id(self) -> int:
        tok = self.tokenizer._full
        for name in ("<pad>", "[PAD]", "<|endoftext|>"):
            tid = tok.token_to_id(name)
            if tid is not None:
                return int(tid)
        return 0

    # ------------------------------------------------------------------ preparation
    @property
    def native_dim(self) -> int:
        return self.spec.native_dim

    def prepare(
        self,
        texts: str | Sequence[str],
        *,
        model: str | None = "embedding-2",
        dimensions: int | None = None,
        input_type: InputType | None = None,
        truncate: bool = False,
    ) -> PreparedRequest:
        """Validate and tokenize; raises InputError with the contract's code for bad input.

        ``model`` is a served id (``embedding-2``, ``embedding-3``) whose limits and dimensions apply,
        or ``None`` for the backing model's own vectors and limit.
        """
        if isinstance(texts, str):
            texts = [texts]
        if input_type not in (None, "query", "document"):
            raise InputError(f"input_type must be 'query' or 'document', not {input_type!r}", code=INVALID_FIELD)
        item_limit = self.spec.max_tokens
        request_limit: int | None = None
        if model is not None:
            served = served_model(model)
            if dimensions is None:
                dimensions = served.default_dimensions
            if dimensions not in served.dimensions:
                allowed = ", ".join(str(d) for d in served.dimensions)
                raise InputError(f"{model} supports dimensions {allowed}, not {dimensions}", code=INVALID_FIELD)
            if served.max_items is not None and len(texts) > served.max_items:
                raise InputError(
                    f"{model} takes at most {served.max_items} items per request, got {len(texts)}",
                    code=INVALID_FIELD,
                )
            item_limit = min(item_limit, served.max_item_tokens)
            request_limit = served.max_request_tokens
        elif dimensions is not None and dimensions <= 0:
            raise InputError("dimensions must be a positive integer", code=INVALID_FIELD)
        items = self.tokenizer.tokenize(texts, input_type=input_type, truncate=truncate, max_tokens=item_limit)
        if request_limit is not None:
            total = sum(item.n_tokens for item in items)
            if total > request_limit:
                raise InputError(
                    f"the request has {total} tokens, over the limit of {request_limit} tokens per request; "
                    "split it into smaller requests",
                    code=TOO_LONG,
                )
        return PreparedRequest(items, dimensions)

    # ------------------------------------------------------------------ embedding
    def submit(self, prepared: PreparedRequest) -> list[Future[np.ndarray]]:
        """Queue a prepared request (raises OverloadedError at once when the queue is full)."""
        return self.scheduler.submit([item.ids for item in prepared.items])

    def finish(self, prepared: PreparedRequest, pooled: Sequence[np.ndarray]) -> EmbeddingResult:
        vectors = np.stack(pooled).astype(np.float32, copy=False)
        vectors = l2_normalize(vectors)  # the contract promises L2-normalised vectors, whatever the model
        vectors = adapt_dimensions(vectors, prepared.dimensions)
        return EmbeddingResult(vectors, prepared.token_counts)

    def embed_prepared(self, prepared: PreparedRequest) -> EmbeddingResult:
        chunks = _chunks(prepared.items, max(1, self.settings.max_queue_tokens // 4))
        pooled: list[np.ndarray] = []
        pending: list[list[Future[np.ndarray]]] = []
        for chunk in chunks:  # two chunks in flight: the worker never idles, the queue never floods
            pending.append(self.scheduler.submit([item.ids for item in chunk]))
            if len(pending) == 2:
                pooled.extend(f.result() for f in pending.pop(0))
        for futures in pending:
            pooled.extend(f.result() for f in futures)
        return self.finish(prepared, pooled)

    def embed(
        self,
        texts: str | Sequence[str],
        *,
        model: str | None = "embedding-2",
        dimensions: int | None = None,
        input_type: InputType | None = None,
        truncate: bool = False,
    ) -> EmbeddingResult:
        """Embed ``texts`` (blocking). Safe to call from many threads at once."""
        prepared = self.prepare(texts, model=model, dimensions=dimensions, input_type=input_type, truncate=truncate)
        return self.embed_prepared(prepared)

    async def aembed(
        self,
        texts: str | Sequence[str],
        *,
        model: str | None = "embedding-2",
        dimensions: int | None = None,
        input_type: InputType | None = None,
        truncate: bool = False,
    ) -> EmbeddingResult:
        """Embed ``texts`` without blocking the event loop (tokenization runs in a thread)."""
        prepared = await asyncio.to_thread(
            self.prepare, texts, model=model, dimensions=dimensions, input_type=input_type, truncate=truncate
        )
        futures = self.submit(prepared)
        try:
            pooled = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        except asyncio.CancelledError:
            for f in futures:
                f.cancel()
            raise
        return await asyncio.to_thread(self.finish, prepared, pooled)

    def count_tokens(self, texts: str | Sequence[str], *, input_type: InputType | None = None) -> list[int]:
        if isinstance(texts, str):
            texts = [texts]
        return self.tokenizer.count(texts, input_type=input_type)

    def close(self) -> None:
        """Finish queued work, then release the backend."""
        self.scheduler.close(wait=True)
        self.backend.close()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(items: list[TokenizedText], max_tokens: int) -> list[list[TokenizedText]]:
    out: list[list[TokenizedText]] = [[]]
    used = 0
    for item in items:
        if out[-1] and used + item.n_tokens > max_tokens:
            out.append([])
            used = 0
        out[-1].append(item)
        used += item.n_tokens
    return out


__all__ = ["BatchStats", "Embedder", "EmbeddingResult", "PreparedRequest"]
