"""The network-free core of ``embed_many``: validate, count, chunk, look up the cache, pack requests, assemble.

Both clients drive the same :class:`Job`; they only differ in how they send its requests (threads or
tasks). A job, in order:

1. validates the texts (strings, not blank: else the 400/1214 the service would answer) and folds
   duplicates, so each distinct text is sent (and paid for) once;
2. counts each text's tokens with the client's :class:`TokenCounter` (exact against embedding2);
3. texts over the per-item limit: an error (400/1261) by default, or with ``long_text="chunk"`` cut
   into overlapping windows (each within the limit, counted exactly again) whose vectors are later
   averaged, weighted by their token counts, and re-normalised;
4. looks every piece to send up in the cache (hits are never sent);
5. packs the rest, in input order, greedily into requests of at most ``request_tokens`` tokens and
   ``request_items`` items;
6. collects each request's vectors (and hands them to the cache) and returns one float32 array in the
   caller's order.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from embedding2.client.cache import EmbeddingCache
from embedding2.client.errors import APIResponseValidationError, local_input_error
from embedding2.client.tokens import TokenCounter
from embedding2.models.registry import SERVED_MODELS
from embedding2.models.spec import InputType

LongText = Literal["error", "chunk"]
DEFAULT_ITEM_TOKENS = 512
DEFAULT_REQUEST_TOKENS = 8192


@dataclass(frozen=True)
class Limits:
    """What one request may hold."""

    item_tokens: int
    request_tokens: int | None
    request_items: int | None


def job_limits(
    model: str, counter: TokenCounter, *, batch_tokens: int | None = None, batch_items: int | None = None
) -> Limits:
    """The contract's limits for ``model``, tightened by the backing model's and the caller's."""
    served = SERVED_MODELS.get(model)
    if served is not None:
        item, request, items = served.max_item_tokens, served.max_request_tokens, served.max_items
    else:  # an id this SDK does not know: embedding-2's limits are the safe guess
        item, request, items = DEFAULT_ITEM_TOKENS, DEFAULT_REQUEST_TOKENS, None
    if counter.max_tokens is not None:
        item = min(item, counter.max_tokens)
    if batch_tokens is not None:
        if batch_tokens < 1:
            raise ValueError("batch_tokens must be positive")
        request = batch_tokens if request is None else min(request, batch_tokens)
    if batch_items is not None:
        if batch_items < 1:
            raise ValueError("batch_items must be positive")
        items = batch_items if items is None else min(items, batch_items)
    return Limits(item, request, items)


def default_dimensions(model: str, dimensions: int | None) -> int | None:
    """``dimensions`` as the service will apply it (the model's default when not given)."""
    if dimensions is not None:
        return dimensions
    served = SERVED_MODELS.get(model)
    return served.default_dimensions if served is not None else None


def pack(counts: Sequence[int], limits: Limits) -> list[list[int]]:
    """Greedy packing in order: indices of ``counts`` grouped into requests within ``limits``.

    An item alone over ``request_tokens`` (possible only when the caller's budget is below the
    per-item limit) goes alone in its request.
    """
    out: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, n in enumerate(counts):
        full_tokens = limits.request_tokens is not None and used + n > limits.request_tokens
        full_items = limits.request_items is not None and len(current) >= limits.request_items
        if current and (full_tokens or full_items):
            out.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        out.append(current)
    return out


def split_windows(
    text: str,
    counter: TokenCounter,
    *,
    input_type: InputType | None,
    item_tokens: int,
    overlap: int,
) -> list[tuple[str, int, int]]:
    """Cut ``text`` into overlapping windows that each fit ``item_tokens`` (counted as the service counts).

    Returns ``(window_text, tokens_as_sent, own_tokens)`` per window, where ``own_tokens`` is the number
    of the text's own tokens in it (the weight of its vector). Windows are slices of the original string
    at the tokenizer's character offsets (token ids are never decoded back to text). Each window is the
    widest that fits once counted exactly (prefix and special tokens included), found by bisection, so
    the windows never go over the limit whatever the tokenizer does at their edges. Consecutive windows
    share about ``overlap`` tokens.
    """
    spans = counter.spans(text)
    if not spans:
        raise local_input_error("a text has no tokens to embed", "1214")

    def tokens(start: int, width: int) -> tuple[str, int]:
        piece = text[spans[start][0] : spans[start + width - 1][1]]
        return piece, counter.count([piece], input_type)[0]

    windows: list[tuple[str, int, int]] = []
    start = 0
    while start < len(spans):
        remaining = len(spans) - start
        piece, n = tokens(start, remaining)
        width = remaining
        if n > item_tokens:  # bisect for the widest window that fits (each span is >= 1 token)
            lo, hi = 0, min(remaining, item_tokens)
            best: tuple[str, int] | None = None
            while lo < hi:
                mid = (lo + hi + 1) // 2
                cand = tokens(start, mid)
                if cand[1] <= item_tokens:
                    lo, best = mid, cand
                else:
                    hi = mid - 1
            if best is None:
                raise local_input_error(f"the per-item limit of {item_tokens} tokens leaves no room for text", "1261")
            width = lo
            piece, n = best
        windows.append((piece, n, width))
        if start + width >= len(spans):
            break
        start += max(1, width - min(overlap, width // 2))
    return windows


def combine(vectors: np.ndarray, weights: Sequence[int]) -> np.ndarray:
    """Token-weighted mean of window vectors, L2-normalised (a float32 vector)."""
    w = np.asarray(weights, dtype=np.float64)
    mean = (vectors.astype(np.float64) * w[:, None]).sum(axis=0) / w.sum()
    norm = np.linalg.norm(mean)
    if norm > 0:
        mean /= norm
    return mean.astype(np.float32)


@dataclass(frozen=True)
class Batch:
    """One request of the job: indices into :attr:`Job.pieces` and their planned token total."""

    pieces: tuple[int, ...]
    tokens: int


class Job:
    """One ``embed_many`` call, planned; the clients send :attr:`batches` and report each answer back."""

    def __init__(
        self,
        texts: Sequence[str],
        *,
        counter: TokenCounter,
        limits: Limits,
        model: str,
        dimensions: int | None,
        input_type: InputType | None,
        long_text: LongText = "error",
        overlap: int = 64,
        cache: EmbeddingCache | None = None,
    ) -> None:
        if isinstance(texts, str):
            raise TypeError("embed_many takes a sequence of texts, not one string (wrap it in a list)")
        if long_text not in ("error", "chunk"):
            raise ValueError(f'long_text must be "error" or "chunk", not {long_text!r}')
        self.counter = counter
        self.limits = limits
        self.cache = cache
        self.n = len(texts)
        self.dims_hint = default_dimensions(model, dimensions)
        self._warned = False
        _validate(texts)
        unique: dict[str, int] = {}
        self._order = np.fromiter((unique.setdefault(t, len(unique)) for t in texts), dtype=np.int64, count=self.n)
        distinct = list(unique)
        self.distinct = len(distinct)
        counts = counter.count(distinct, input_type) if distinct else []

        # pieces: the strings actually sent; parts[u]: (piece, weight) of distinct text u
        piece_index: dict[str, int] = {}
        self.pieces: list[str] = []
        self.piece_tokens: list[int] = []
        self._parts: list[list[tuple[int, int]]] = []

        def add_piece(text: str, tokens: int) -> int:
            idx = piece_index.get(text)
            if idx is None:
                idx = piece_index[text] = len(self.pieces)
                self.pieces.append(text)
                self.piece_tokens.append(tokens)
            return idx

        too_long = [i for i, c in enumerate(counts) if c > limits.item_tokens]
        if too_long and long_text == "error":
            first = distinct[too_long[0]]
            where = texts.index(first)
            raise local_input_error(
                f"texts[{where}] has {counts[too_long[0]]} tokens, over the limit of {limits.item_tokens} tokens "
                f"per item ({len(too_long)} text(s) over it); shorten them or pass long_text='chunk'",
                "1261",
            )
        self.chunked = len(too_long)
        long_set = set(too_long)
        for u, text in enumerate(distinct):
            if u in long_set:
                windows = split_windows(
                    text, counter, input_type=input_type, item_tokens=limits.item_tokens, overlap=overlap
                )
                self._parts.append([(add_piece(w, n), own) for w, n, own in windows])
            else:
                self._parts.append([(add_piece(text, counts[u]), 1)])

        # the cache: hits are never sent
        self._vectors: list[np.ndarray | None] = [None] * len(self.pieces)
        self._keys: list[bytes] = []
        if cache is not None:
            dims = default_dimensions(model, dimensions)
            self._keys = [EmbeddingCache.key(model, dims, input_type, p) for p in self.pieces]
            hits = cache.get_many(self._keys)
            for i, key in enumerate(self._keys):
                vec = hits.get(key)
                if vec is not None:
                    self._vectors[i] = vec
        todo = [i for i, v in enumerate(self._vectors) if v is None]
        self.cached_pieces = len(self.pieces) - len(todo)
        groups = pack([self.piece_tokens[i] for i in todo], limits)
        self.batches: list[Batch] = [
            Batch(tuple(todo[j] for j in g), sum(self.piece_tokens[todo[j]] for j in g)) for g in groups
        ]
        self.total_tokens = sum(b.tokens for b in self.batches)

    def texts_of(self, batch: Batch) -> list[str]:
        return [self.pieces[i] for i in batch.pieces]

    def split(self, batch: Batch) -> tuple[Batch, Batch] | None:
        """Two halves of a batch the service refused as too long (only with estimated counts)."""
        if len(batch.pieces) < 2:
            return None
        half = len(batch.pieces) // 2
        a, b = batch.pieces[:half], batch.pieces[half:]
        return (
            Batch(a, sum(self.piece_tokens[i] for i in a)),
            Batch(b, sum(self.piece_tokens[i] for i in b)),
        )

    def complete(
        self, batch: Batch, vectors: np.ndarray, billed_tokens: int | None = None
    ) -> list[tuple[bytes, np.ndarray]]:
        """Store one request's vectors; returns the (key, vector) pairs to write to the cache."""
        if vectors.ndim != 2 or vectors.shape[0] != len(batch.pieces):
            raise APIResponseValidationError(
                f"the service answered {vectors.shape[0] if vectors.ndim else 0} vectors for {len(batch.pieces)} inputs"
            )
        if billed_tokens is not None and self.counter.exact and billed_tokens != batch.tokens and not self._warned:
            self._warned = True
            warnings.warn(
                f"the service counted {billed_tokens} tokens where tokenizer {self.counter.name!r} counted "
                f"{batch.tokens}: it runs another backing model; pass the client tokenizer= that model "
                "(or tokenizer='estimate') so that requests are planned within its limits",
                RuntimeWarning,
                stacklevel=2,
            )
        out: list[tuple[bytes, np.ndarray]] = []
        for row, i in enumerate(batch.pieces):
            vec = vectors[row]
            self._vectors[i] = vec
            if self._keys:
                out.append((self._keys[i], vec))
        return out

    def result(self) -> np.ndarray:
        """The vectors in the caller's order: float32, shape (n, dims)."""
        missing = sum(v is None for v in self._vectors)
        if missing:
            raise RuntimeError(f"{missing} piece(s) of the job have no vector yet")
        if self.n == 0:
            return np.zeros((0, self.dims_hint or 0), dtype=np.float32)
        vecs = [v for v in self._vectors if v is not None]  # all of them (checked above)
        dims = {v.shape[0] for v in vecs}
        if len(dims) != 1:
            raise APIResponseValidationError(f"the service answered vectors of different sizes: {sorted(dims)}")
        (d,) = dims
        distinct = np.empty((len(self._parts), d), dtype=np.float32)
        for u, parts in enumerate(self._parts):
            if len(parts) == 1:
                distinct[u] = vecs[parts[0][0]]
            else:
                distinct[u] = combine(np.stack([vecs[p] for p, _ in parts]), [w for _, w in parts])
        return distinct[self._order]


def _validate(texts: Sequence[str]) -> None:
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise local_input_error(f"texts[{i}] is {type(t).__name__}, expected a string", "1214")
        if not t.strip():
            raise local_input_error(f"texts[{i}] is empty or blank; every text must contain text", "1214")


__all__ = ["Batch", "Job", "Limits", "LongText", "combine", "default_dimensions", "job_limits", "pack", "split_windows"]
