"""Content-based recommendation: items by similarity to a user's recency-weighted profile.

- Profile: the weighted mean of the vectors of the items in the user's history, renormalised. Weights
  decay with age: the i-th most recent item (0 = newest) weighs ``0.5 ** (i / half_life)``; with
  timestamps, an item ``t`` seconds older than the newest weighs ``0.5 ** (t / half_life)``.
  ``half_life=None`` weighs every item the same.
- Recommendation: the unseen items of highest cosine with the profile; optionally re-ranked for
  diversity by maximal marginal relevance (MMR, Carbonell & Goldstein 1998): among the ``pool`` best
  candidates, repeatedly take the item maximising ``lam * sim(profile, item) - (1 - lam) * max sim(item,
  already taken)``; ``lam=1`` is plain similarity ranking.
- "More like this": the items nearest one item (the item itself excluded), with the same MMR option.

Centering (dense vectors, on by default): the catalogue's mean vector is subtracted from every item
and the rows renormalised before anything else. Sentence embeddings share a large common direction
(any two e5 titles have a cosine of about 0.8), which drowns the differences between items in a
mean of several vectors; without it the profile of a user is mostly that common direction. On the
thucnews benchmark (docs/scenarios.md) centering raises precision@10 from 88 to 96. Scores are then
cosines in the centred space.

Vectors may be dense unit rows (embeddings) or sparse L2-normalised rows (the TF-IDF baseline, never
centred).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedding2.apps.encoders import normalize_rows


@dataclass(frozen=True)
class Recommendation:
    id: str
    score: float  # cosine with the profile (or with the item, for "more like this")


def _dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)


def mmr(relevance: np.ndarray, vectors: Any, k: int, lam: float) -> list[int]:
    """Indices (into ``relevance``) of ``k`` items chosen by maximal marginal relevance."""
    n = len(relevance)
    k = min(k, n)
    if k <= 0:
        return []
    sims = _dense(vectors @ vectors.T)
    chosen: list[int] = []
    max_sim = np.full(n, -np.inf, dtype=np.float64)
    available = np.ones(n, dtype=bool)
    for _ in range(k):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = lam * relevance - (1.0 - lam) * penalty
        value[~available] = -np.inf
        j = int(np.argmax(value))
        chosen.append(j)
        available[j] = False
        max_sim = np.maximum(max_sim, sims[j])
    return chosen


class Recommender:
    """Recommendations over a fixed catalogue of items (ids and their vectors)."""

    def __init__(self, ids: Sequence[str], vectors: Any, *, center: bool = True) -> None:
        if len(ids) != vectors.shape[0]:
            raise ValueError(f"{len(ids)} ids but {vectors.shape[0]} vectors")
        self.ids = [str(i) for i in ids]
        self.index = {item: i for i, item in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            raise ValueError("item ids must be unique")
        if hasattr(vectors, "tocsr"):
            self.vectors = vectors
        else:
            dense = normalize_rows(vectors)
            self.vectors = normalize_rows(dense - dense.mean(axis=0)) if center and len(dense) > 1 else dense

    def _rows(self, items: Iterable[str]) -> list[int]:
        rows = []
        for item in items:
            if item not in self.index:
                raise KeyError(f"unknown item {item!r}")
            rows.append(self.index[item])
        return rows

    def weights(
        self, n: int, *, half_life: float | None = 5.0, timestamps: Sequence[float] | None = None
    ) -> np.ndarray:
        """Recency weights of a history of ``n`` items, oldest first."""
        if half_life is None:
            return np.ones(n)
        if timestamps is not None:
            t = np.asarray(timestamps, dtype=np.float64)
            age = t.max() - t
        else:
            age = np.arange(n - 1, -1, -1, dtype=np.float64)
        return np.power(0.5, age / half_life)

    def profile(
        self, history: Sequence[str], *, half_life: float | None = 5.0, timestamps: Sequence[float] | None = None
    ) -> np.ndarray:
        """The user's unit profile vector from ``history`` (oldest first)."""
        if not history:
            raise ValueError("the history is empty: nothing to recommend from")
        rows = self._rows(history)
        w = self.weights(len(rows), half_life=half_life, timestamps=timestamps)
        v = _dense(self.vectors[rows].T @ w).reshape(1, -1)
        return normalize_rows(v)[0]

    def _rank(self, query: np.ndarray, k: int, exclude: set[int], lam: float | None, pool: int) -> list[Recommendation]:
        scores = _dense(self.vectors @ query).reshape(-1).astype(np.float64)
        if exclude:
            scores[list(exclude)] = -np.inf
        n_ok = int(np.isfinite(scores).sum())
        take = min(max(k, pool if lam is not None else k), n_ok)
        if take <= 0:
            return []
        top = np.argpartition(-scores, take - 1)[:take]
        top = top[np.argsort(-scores[top], kind="stable")]
        if lam is not None and lam < 1.0:
            order = [int(top[j]) for j in mmr(scores[top], self.vectors[top], k, lam)]
        else:
            order = [int(i) for i in top[:k]]
        return [Recommendation(self.ids[i], float(scores[i])) for i in order]

    def recommend(
        self,
        history: Sequence[str],
        k: int = 10,
        *,
        half_life: float | None = 5.0,
        timestamps: Sequence[float] | None = None,
        mmr_lambda: float | None = None,
        pool: int = 100,
        exclude: Iterable[str] = (),
    ) -> list[Recommendation]:
        """The ``k`` best unseen items for a user with ``history`` (oldest first)."""
        q = self.profile(history, half_life=half_life, timestamps=timestamps)
        seen = set(self._rows(history)) | {self.index[e] for e in exclude if e in self.index}
        return self._rank(q, k, seen, mmr_lambda, pool)

    def more_like_this(
        self, item: str, k: int = 10, *, mmr_lambda: float | None = None, pool: int = 100
    ) -> list[Recommendation]:
        """The ``k`` items most like ``item`` (itself excluded)."""
        row = self._rows([item])[0]
        q = _dense(self.vectors[row]).reshape(-1)
        return self._rank(q, k, {row}, mmr_lambda, pool)

    def diversity(self, items: Sequence[str]) -> float:
        """Mean pairwise cosine distance of ``items`` (intra-list diversity; 0 for fewer than two)."""
        rows = self._rows(items)
        if len(rows) < 2:
            return 0.0
        sims = _dense(self.vectors[rows] @ self.vectors[rows].T)
        n = len(rows)
        return float(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


__all__ = ["Recommendation", "Recommender", "mmr"]
