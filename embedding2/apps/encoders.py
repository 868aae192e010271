"""Where the scenarios get their vectors: the :class:`Encoder` protocol and its implementations.

Every scenario takes an :class:`Encoder`, so each one runs the same way in-process or against a server:

- :class:`EngineEncoder`: the in-process engine (:class:`~embedding2.engine.embedder.Embedder`), the
  backing model's native vectors (``served_model=None``) or a served id's (``"embedding-2"``: 1024 dims,
  the same cosines). Texts over the model's token limit are cut to it (``truncate=True``).
- :class:`RemoteEncoder`: any Embedding-2-compatible endpoint through the SDK,
  :meth:`embedding2.client.Client.embed_many` (contract-sized requests, retries, token counts from the
  SDK's counter); a text over the limit is embedded by the SDK's ``long_text="chunk"`` policy
  (overlapping windows, averaged) unless ``long_text="error"`` is asked for.
- :class:`CachedEncoder`: wraps either with an on-disk cache (the evaluation harness's SQLite
  :class:`~embedding2.evaluation.encoders.VectorStore`), so a text is embedded once per vector space.

Prefixes: retrieval embeds questions with ``input_type="query"`` and passages with ``"document"``;
symmetric tasks (clustering, recommendation, anomaly detection) pass ``None``, the model's default
(``query: `` for e5). :func:`open_encoder` picks the implementation from one option, ``base_url``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from embedding2.engine.adapter import adapt_dimensions

InputType = Literal["query", "document"]
Progress = Callable[[int], None]


@runtime_checkable
class Encoder(Protocol):
    """Texts in, one L2-normalised float32 row per text out."""

    key: str  # identity of the vector space (model, served id, endpoint): indexes and caches check it
    dims: int  # width of the vectors
    max_tokens: int  # the per-text token limit the vectors are made under

    def encode(self, texts: Sequence[str], input_type: InputType | None = None) -> np.ndarray:
        """Vectors of ``texts`` (``(len(texts), dims)`` float32, unit rows)."""
        ...

    def count_tokens(self, texts: Sequence[str], input_type: InputType | None = None) -> list[int]:
        """Tokens each text takes (prefix and special tokens included), exact or a safe over-estimate."""
        ...

    def close(self) -> None:
        """Release what the encoder holds."""
        ...


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32 (zero rows stay zero)."""
    v = np.asarray(x, dtype=np.float32)
    if v.ndim != 2:
        v = v.reshape(len(v), -1)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class EngineEncoder:
    """The in-process engine."""

    def __init__(
        self,
        embedder: Any = None,
        *,
        model: str | None = None,
        settings: Any = None,
        served_model: str | None = None,
        batch_size: int = 256,
    ) -> None:
        """Wrap ``embedder``, or open one for ``model`` (a pack name or folder) with ``settings``."""
        self._owns = embedder is None
        if embedder is None:
            from embedding2.engine.embedder import Embedder

            embedder = Embedder(model, settings=settings)
        self.embedder = embedder
        self.served_model = served_model
        self.batch_size = max(1, batch_size)
        spec = embedder.spec
        self.max_tokens = int(spec.max_tokens)
        if served_model is None:
            self.dims = int(spec.native_dim)
        else:
            from embedding2.models.registry import served_model as served

            info = served(served_model)
            self.dims = int(info.default_dimensions)
            self.max_tokens = min(self.max_tokens, int(info.max_item_tokens))
        self.key = f"engine:{spec.name}:{served_model or 'native'}:{self.dims}"
        self.progress: Progress | None = None

    def encode(self, texts: Sequence[str], input_type: InputType | None = None) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            # native vectors, then the served id's dimension map: the same rows as model=served_model,
            # without its 8K-tokens-per-request limit
            res = self.embedder.embed(batch, model=None, input_type=input_type, truncate=True)
            out.append(adapt_dimensions(np.asarray(res.vectors, dtype=np.float32), self.dims))
            if self.progress is not None:
                self.progress(len(batch))
        return normalize_rows(np.concatenate(out))

    def count_tokens(self, texts: Sequence[str], input_type: InputType | None = None) -> list[int]:
        return [int(n) for n in self.embedder.count_tokens(list(texts), input_type=input_type)]

    def close(self) -> None:
        if self._owns:
            self.embedder.close()


class RemoteEncoder:
    """An Embedding-2-compatible endpoint, through :class:`embedding2.client.Client`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        model: str = "embedding-2",
        dimensions: int | None = None,
        long_text: Literal["error", "chunk"] = "chunk",
        max_tokens: int = 512,
        tokenizer: Any = None,
        cache_dir: Path | None = None,
        client: Any = None,
    ) -> None:
        """``tokenizer`` and ``cache_dir`` go to the SDK's token counter (default: e5-small's tokenizer for
        a self-hosted endpoint, an estimate for the hosted service)."""
        self._owns = client is None
        if client is None:
            from embedding2.client import Client

            client = Client(base_url=base_url, api_key=api_key, tokenizer=tokenizer, cache_dir=cache_dir)
        self.client = client
        self.model = model
        self.dimensions = dimensions
        self.long_text = long_text
        self.max_tokens = max_tokens
        self.dims = int(dimensions or (1024 if model == "embedding-2" else 2048))
        self.key = f"remote:{base_url.rstrip('/')}:{model}:{self.dims}"
        self.progress: Progress | None = None

    def encode(self, texts: Sequence[str], input_type: InputType | None = None) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        vectors = self.client.embed_many(
            texts,
            model=self.model,
            dimensions=self.dimensions,
            input_type=input_type,
            long_text=self.long_text,
        )
        out = normalize_rows(np.asarray(vectors, dtype=np.float32))
        self.dims = out.shape[1]
        if self.progress is not None:
            self.progress(len(texts))
        return out

    def count_tokens(self, texts: Sequence[str], input_type: InputType | None = None) -> list[int]:
        # the SDK's counter: exact against an embedding2 server, a stated over-estimate elsewhere
        return [int(n) for n in self.client.count_tokens(list(texts), input_type)]

    def close(self) -> None:
        if self._owns:
            self.client.close()


class CachedEncoder:
    """An encoder whose vectors are kept on disk (SQLite), keyed by vector space, input type and text."""

    def __init__(self, inner: Encoder, path: Path) -> None:
        from embedding2.evaluation.encoders import VectorStore  # the harness's text -> vector cache

        self.inner = inner
        self.key = inner.key
        self.dims = inner.dims
        self.max_tokens = inner.max_tokens
        self.path = Path(path)
        if self.path.suffix != ".sqlite":  # a folder: one file per vector space
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", inner.key)[:100]
            self.path = self.path / f"{slug}.sqlite"
        self.store = VectorStore(self.path)

    def encode(self, texts: Sequence[str], input_type: InputType | None = None) -> np.ndarray:
        texts = list(texts)
        kind = input_type or "symmetric"
        found = self.store.get_many(kind, texts)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        for start in range(0, len(missing), 1024):  # stored as it goes: an interrupted run resumes
            chunk = missing[start : start + 1024]
            vectors = self.inner.encode(chunk, input_type)
            self.store.put_many(kind, chunk, vectors)
            found.update(zip(chunk, vectors, strict=True))
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        return normalize_rows(np.stack([found[t] for t in texts]))

    def count_tokens(self, texts: Sequence[str], input_type: InputType | None = None) -> list[int]:
        return self.inner.count_tokens(texts, input_type)

    def close(self) -> None:
        self.store.close()
        self.inner.close()


def open_encoder(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    settings: Any = None,
    served_model: str | None = None,
    remote_model: str = "embedding-2",
    dimensions: int | None = None,
    cache: Path | None = None,
) -> Encoder:
    """The encoder one option selects: ``base_url`` set -> :class:`RemoteEncoder`, else :class:`EngineEncoder`.

    ``model`` (a pack name or folder) and ``settings`` configure the engine; ``served_model`` makes it
    produce a served id's vectors instead of native ones. ``cache`` wraps the result in a
    :class:`CachedEncoder` (a ``.sqlite`` file, or a folder holding one file per vector space).
    """
    encoder: Encoder
    if base_url:
        cache_dir = getattr(settings, "cache_dir", None)  # where the SDK finds its tokenizer
        encoder = RemoteEncoder(base_url, api_key, model=remote_model, dimensions=dimensions, cache_dir=cache_dir)
    else:
        encoder = EngineEncoder(model=model, settings=settings, served_model=served_model)
    if cache is not None:
        encoder = CachedEncoder(encoder, cache)
    return encoder


__all__ = [
    "CachedEncoder",
    "Encoder",
    "EngineEncoder",
    "InputType",
    "RemoteEncoder",
    "normalize_rows",
    "open_encoder",
]
