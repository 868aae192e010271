"""Anomaly detection: fit on normal texts, score new ones, flag those above a percentile threshold.

Scores grow with abnormality. Methods:

- ``knn`` (default): mean cosine distance to the ``n_neighbors`` nearest normal texts (scikit-learn
  ``NearestNeighbors``, brute force). The normal texts' own scores leave each text out of its
  neighbours, so the threshold is not biased low.
- ``lof``: scikit-learn ``LocalOutlierFactor`` (novelty mode, cosine): local density relative to the
  neighbours'; score = ``-score_samples``; the normal scores are ``-negative_outlier_factor_``.
- ``iforest``: scikit-learn ``IsolationForest`` (200 trees, fixed seed); score = ``-score_samples``.

The threshold is the ``percentile``-th percentile of the normal texts' scores (95: about 5 % of normal
texts would be flagged). A fitted detector is saved as one ``.npz`` file: the normal vectors, the
settings and the encoder's vector-space key, no pickle; loading refits (deterministic, fast).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from embedding2.apps.encoders import normalize_rows

Method = Literal["knn", "lof", "iforest"]
METHODS: tuple[Method, ...] = ("knn", "lof", "iforest")


class AnomalyDetector:
    """Scores texts' vectors by how unlike a set of normal vectors they are."""

    def __init__(
        self, method: Method = "knn", *, n_neighbors: int = 10, percentile: float = 95.0, seed: int = 0
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} (one of {', '.join(METHODS)})")
        if not 0.0 < percentile <= 100.0:
            raise ValueError("percentile must be in (0, 100]")
        self.method: Method = method
        self.n_neighbors = n_neighbors
        self.percentile = percentile
        self.seed = seed
        self.model: Any = None
        self.normal: Any = None
        self.train_scores: np.ndarray = np.zeros(0)
        self.threshold = float("inf")
        self.encoder_key = ""

    @staticmethod
    def _prep(x: Any) -> Any:
        return x if hasattr(x, "tocsr") else normalize_rows(x)

    def fit(self, vectors: Any) -> AnomalyDetector:
        """Learn what normal looks like from ``vectors`` (dense unit rows or sparse rows)."""
        x = self._prep(vectors)
        n = x.shape[0]
        if n < 2:
            raise ValueError("fitting needs at least two normal texts")
        k = max(1, min(self.n_neighbors, n - 1))
        self.normal = x
        if self.method == "knn":
            from sklearn.neighbors import NearestNeighbors

            self.model = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(x)
            dist, _ = self.model.kneighbors(x, n_neighbors=k + 1)
            self.train_scores = dist[:, 1:].mean(axis=1)  # leave each text out of its own neighbours
        elif self.method == "lof":
            from sklearn.neighbors import LocalOutlierFactor

            self.model = LocalOutlierFactor(n_neighbors=k, metric="cosine", algorithm="brute", novelty=True).fit(x)
            self.train_scores = -np.asarray(self.model.negative_outlier_factor_)
        else:
            from sklearn.ensemble import IsolationForest

            self.model = IsolationForest(n_estimators=200, random_state=self.seed).fit(x)
            self.train_scores = -np.asarray(self.model.score_samples(x))
        self.threshold = float(np.percentile(self.train_scores, self.percentile))
        return self

    def score(self, vectors: Any) -> np.ndarray:
        """Anomaly scores (higher = less like the normal texts)."""
        if self.model is None:
            raise RuntimeError("fit the detector first")
        x = self._prep(vectors)
        if self.method == "knn":
            k = int(self.model.n_neighbors)
            dist, _ = self.model.kneighbors(x, n_neighbors=k)
            return np.asarray(dist.mean(axis=1), dtype=np.float64)
        return -np.asarray(self.model.score_samples(x), dtype=np.float64)

    def flag(self, vectors: Any) -> tuple[np.ndarray, np.ndarray]:
        """(scores, flags): a text is flagged when its score is above the threshold."""
        scores = self.score(vectors)
        return scores, scores > self.threshold

    def save(self, path: str | Path) -> Path:
        """Save the normal vectors and the settings to ``path`` (``.npz``)."""
        if self.normal is None:
            raise RuntimeError("fit the detector first")
        if hasattr(self.normal, "tocsr"):
            raise ValueError("only dense (embedding) detectors can be saved")
        meta = {
            "method": self.method,
            "n_neighbors": self.n_neighbors,
            "percentile": self.percentile,
            "seed": self.seed,
            "threshold": self.threshold,
            "encoder": self.encoder_key,
        }
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as f:  # a file object: numpy adds no ".npz" to the name
            np.savez_compressed(f, normal=np.asarray(self.normal, dtype=np.float32), meta=np.array(json.dumps(meta)))
        return out

    @classmethod
    def load(cls, path: str | Path) -> AnomalyDetector:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            normal = np.asarray(data["normal"])
        det = cls(meta["method"], n_neighbors=meta["n_neighbors"], percentile=meta["percentile"], seed=meta["seed"])
        det.fit(normal)
        det.encoder_key = str(meta.get("encoder", ""))
        return det


__all__ = ["METHODS", "AnomalyDetector", "Method"]
