"""Clustering texts by meaning: k-means on unit vectors, automatic k, descriptions and a 2-D map.

- :func:`kmeans`: scikit-learn k-means on L2-normalised rows (so squared Euclidean distance is
  ``2 - 2 cos``: spherical k-means up to the centroid norm), ``n_init`` restarts, fixed seed.
- :func:`choose_k`: when k is not given, every k in ``[k_min, k_max]`` is tried on a sample (at most
  3,000 texts) and the one with the highest mean silhouette coefficient (cosine distance) wins; the
  scores of all candidates are returned so the choice can be shown.
- :func:`describe`: per cluster its size, the texts nearest its centroid (representatives) and its
  keywords (class-based TF-IDF over character bigrams and words, :func:`~embedding2.apps.lexical.group_keywords`).
- :func:`save_map`: a PNG scatter of a 2-D projection (t-SNE up to 5,000 texts, PCA above), coloured
  by cluster, each cluster labelled at its centre (with keywords when a CJK font is installed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedding2.apps.encoders import normalize_rows
from embedding2.apps.lexical import group_keywords


@dataclass
class Cluster:
    id: int
    size: int
    representatives: list[int]  # indices of the texts nearest the centroid, nearest first
    keywords: list[str]


@dataclass
class Clustering:
    labels: np.ndarray  # (n,) cluster id of each text
    k: int
    clusters: list[Cluster]  # largest first
    k_scores: dict[int, float] = field(default_factory=dict)  # silhouette per k tried (automatic k only)


def kmeans(vectors: Any, k: int, *, seed: int = 0, n_init: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Labels and centroids of k-means with ``k`` clusters (rows L2-normalised first; sparse rows allowed)."""
    from sklearn.cluster import KMeans

    x = vectors if hasattr(vectors, "tocsr") else normalize_rows(vectors)
    if k < 1 or k > x.shape[0]:
        raise ValueError(f"k must be between 1 and the number of texts ({x.shape[0]}), not {k}")
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    labels = km.fit_predict(x)
    return np.asarray(labels, dtype=np.int64), np.asarray(km.cluster_centers_, dtype=np.float32)


def choose_k(
    vectors: np.ndarray, *, k_min: int = 2, k_max: int = 20, sample: int = 3000, seed: int = 0
) -> tuple[int, dict[int, float]]:
    """The k in ``[k_min, k_max]`` with the highest mean silhouette (cosine), and every k's score."""
    from sklearn.metrics import silhouette_score

    x = normalize_rows(vectors)
    rng = np.random.default_rng(seed)
    if x.shape[0] > sample:
        x = x[np.sort(rng.choice(x.shape[0], sample, replace=False))]
    k_max = min(k_max, x.shape[0] - 1)
    if k_max < k_min:
        raise ValueError(f"too few texts ({x.shape[0]}) to choose k between {k_min} and {k_max}")
    scores: dict[int, float] = {}
    for k in range(k_min, k_max + 1):
        labels, _ = kmeans(x, k, seed=seed, n_init=2)
        if len(set(labels.tolist())) < 2:
            continue
        scores[k] = float(silhouette_score(x, labels, metric="cosine"))
    best = max(scores, key=lambda kk: (scores[kk], -kk))
    return best, scores


def describe(
    texts: Sequence[str],
    vectors: np.ndarray,
    labels: np.ndarray,
    *,
    n_representatives: int = 3,
    n_keywords: int = 8,
) -> list[Cluster]:
    """Size, representative texts (nearest the centroid) and keywords of each cluster, largest first."""
    x = normalize_rows(vectors)
    keywords = group_keywords(texts, [int(v) for v in labels.tolist()], n_keywords)
    out = []
    for c in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == c)
        centroid = normalize_rows(x[members].mean(axis=0, keepdims=True))[0]
        sims = x[members] @ centroid
        order = members[np.argsort(-sims, kind="stable")[:n_representatives]]
        out.append(Cluster(int(c), len(members), [int(i) for i in order], keywords.get(int(c), [])))
    out.sort(key=lambda cl: (-cl.size, cl.id))
    return out


def cluster_texts(
    texts: Sequence[str],
    vectors: np.ndarray,
    k: int | None = None,
    *,
    k_min: int = 2,
    k_max: int = 20,
    seed: int = 0,
    n_representatives: int = 3,
    n_keywords: int = 8,
) -> Clustering:
    """Cluster ``texts`` (given their vectors) into ``k`` groups, or an automatically chosen number."""
    if len(texts) != vectors.shape[0]:
        raise ValueError(f"{len(texts)} texts but {vectors.shape[0]} vectors")
    k_scores: dict[int, float] = {}
    if k is None:
        k, k_scores = choose_k(vectors, k_min=k_min, k_max=k_max, seed=seed)
    labels, _ = kmeans(vectors, k, seed=seed)
    clusters = describe(texts, vectors, labels, n_representatives=n_representatives, n_keywords=n_keywords)
    return Clustering(labels, k, clusters, k_scores)


def project_2d(vectors: np.ndarray, method: str = "auto", seed: int = 0) -> np.ndarray:
    """2-D coordinates: ``tsne`` (cosine, PCA start), ``pca``, or ``auto`` (t-SNE up to 5,000 rows)."""
    x = normalize_rows(vectors)
    if method == "auto":
        method = "tsne" if x.shape[0] <= 5000 else "pca"
    if method == "pca" or x.shape[0] < 5:
        from sklearn.decomposition import PCA

        n = min(2, x.shape[0], x.shape[1])
        coords = PCA(n_components=n, random_state=seed).fit_transform(x)
        return np.pad(coords, ((0, 0), (0, 2 - n))) if n < 2 else coords
    if method != "tsne":
        raise ValueError(f"unknown projection {method!r} (tsne, pca or auto)")
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (x.shape[0] - 1) // 3)))
    return np.asarray(
        TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity, random_state=seed).fit_transform(x)
    )


def _cjk_font() -> str | None:
    from matplotlib import font_manager

    wanted = ("Noto Sans CJK", "Noto Serif CJK", "WenQuanYi", "Source Han", "SimHei", "Droid Sans Fallback", "AR PL")
    for font in font_manager.fontManager.ttflist:
        if any(w.lower() in font.name.lower() for w in wanted):
            return str(font.name)
    return None


def save_map(
    vectors: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    *,
    clusters: Sequence[Cluster] = (),
    method: str = "auto",
    title: str | None = None,
    seed: int = 0,
) -> Path:
    """Save a PNG scatter of the texts in 2-D, coloured by cluster; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if method == "auto":
        method = "tsne" if vectors.shape[0] <= 5000 else "pca"
    coords = project_2d(vectors, method, seed)
    font = _cjk_font()
    fig, ax = plt.subplots(figsize=(10, 8), dpi=110)
    ids = sorted(set(labels.tolist()))
    cmap = plt.get_cmap("tab20" if len(ids) > 10 else "tab10")
    by_id = {c.id: c for c in clusters}
    for i, c in enumerate(ids):
        pts = coords[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=6, alpha=0.6, color=cmap(i % cmap.N), label=f"{c} (n={len(pts)})")
        cx, cy = np.median(pts, axis=0)
        text = str(c)
        if font and c in by_id and by_id[c].keywords:
            text += " " + " ".join(by_id[c].keywords[:3])
        ax.annotate(
            text,
            (cx, cy),
            fontsize=9,
            weight="bold",
            ha="center",
            fontfamily=font or "sans-serif",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.7, "lw": 0},
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{len(labels)} texts, {len(ids)} clusters ({'t-SNE' if method == 'tsne' else 'PCA'})")
    if len(ids) <= 20:
        ax.legend(markerscale=3, fontsize=8, loc="best", frameon=False)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


__all__ = ["Cluster", "Clustering", "choose_k", "cluster_texts", "describe", "kmeans", "project_2d", "save_map"]
