"""The evaluation metrics, as pure functions of vectors and labels (MTEB / C-MTEB definitions).

Every function returns fractions in [0, 1] (correlations in [-1, 1]); callers scale by 100 for reports.

- STS and pair similarity: Spearman (and Pearson) correlation of the cosine of each pair with the gold
  score or 0/1 label.
- Similarities are compared at 1e-6 precision (:func:`similarity_key`), the precision float32 vectors
  carry, so float noise cannot reorder near-ties (pawsx-zh has over a hundred pairs within 1e-6).
- Retrieval: exact (brute-force) cosine search; nDCG@k with linear gains and log2 discounts (as
  ``pytrec_eval``/BEIR), MRR@k and recall@k, averaged over the queries that have a relevant document.
- Bitext mining: nearest neighbour of each source sentence among all target sentences; accuracy, and
  MTEB's weighted F1 over the predicted indices.
- Clustering: V-measure of mini-batch k-means with the true number of classes, mean over seeds.
- Classification: logistic regression on the vectors; accuracy on a test split, or cross-validated.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

# similarities are compared at this precision (see similarity_key)
SIMILARITY_DECIMALS = 6


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


def pair_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of row i of ``a`` with row i of ``b``."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    a64 = a64 / np.maximum(np.linalg.norm(a64, axis=1, keepdims=True), 1e-300)
    b64 = b64 / np.maximum(np.linalg.norm(b64, axis=1, keepdims=True), 1e-300)
    return np.einsum("ij,ij->i", a64, b64)


def similarity_key(sims: np.ndarray) -> np.ndarray:
    """Similarities as compared for ranking: rounded to ``SIMILARITY_DECIMALS``.

    float32 vectors carry about 7 significant digits, so cosines that agree to 1e-6 are ties: rounding
    keeps float noise (a 1024-d isometry of the vectors, another summation order) from reordering them,
    so the same model gives the same scores through the engine and through the service.
    """
    return np.round(np.asarray(sims, dtype=np.float64), SIMILARITY_DECIMALS)


def sts_scores(a: np.ndarray, b: np.ndarray, gold: Sequence[float]) -> dict[str, float]:
    """Spearman and Pearson correlation of pair cosines with the gold scores."""
    cos = similarity_key(pair_cosines(a, b))
    g = np.asarray(gold, dtype=np.float64)
    if cos.shape[0] != g.shape[0]:
        raise ValueError(f"{cos.shape[0]} pairs but {g.shape[0]} gold scores")
    if cos.shape[0] < 2:
        raise ValueError("correlation needs at least two pairs")
    return {
        "spearman": float(stats.spearmanr(cos, g).statistic),
        "pearson": float(stats.pearsonr(cos, g).statistic),
    }


# ---------------------------------------------------------------------------------------------- retrieval
def top_k(queries: np.ndarray, docs: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Indices of the ``k`` documents of highest cosine for each query, best first (exact search).

    Similarities are compared at 1e-6 (:func:`similarity_key`); ties are broken by document order,
    so the result is deterministic.
    """
    q = normalize(queries)
    d = normalize(docs)
    k = min(k, d.shape[0])
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], chunk):
        sims = similarity_key(q[start : start + chunk] @ d.T)
        # a stable sort of the negated scores keeps document order among equal scores
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        out[start : start + chunk] = order
    return out


def ndcg_at_k(ranked: Sequence[Sequence[str]], relevant: Sequence[Mapping[str, float]], k: int = 10) -> float:
    """Mean nDCG@k; ``ranked[i]`` is query i's ranking, ``relevant[i]`` its graded relevance judgements."""
    scores = []
    for ranking, rels in zip(ranked, relevant, strict=True):
        ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
        if not ideal:
            continue
        dcg = sum(rels.get(doc, 0.0) / math.log2(i + 2) for i, doc in enumerate(ranking[:k]))
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
        scores.append(dcg / idcg)
    return float(np.mean(scores)) if scores else 0.0


def mrr_at_k(ranked: Sequence[Sequence[str]], relevant: Sequence[Mapping[str, float]], k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant document within the top ``k`` (0 when none)."""
    scores = []
    for ranking, rels in zip(ranked, relevant, strict=True):
        if not any(r > 0 for r in rels.values()):
            continue
        rr = 0.0
        for i, doc in enumerate(ranking[:k]):
            if rels.get(doc, 0.0) > 0:
                rr = 1.0 / (i + 1)
                break
        scores.append(rr)
    return float(np.mean(scores)) if scores else 0.0


def recall_at_k(ranked: Sequence[Sequence[str]], relevant: Sequence[Mapping[str, float]], k: int = 10) -> float:
    """Mean fraction of each query's relevant documents found in its top ``k``."""
    scores = []
    for ranking, rels in zip(ranked, relevant, strict=True):
        positives = {doc for doc, r in rels.items() if r > 0}
        if not positives:
            continue
        scores.append(len(positives.intersection(ranking[:k])) / len(positives))
    return float(np.mean(scores)) if scores else 0.0


def retrieval_scores(
    queries: np.ndarray,
    docs: np.ndarray,
    doc_ids: Sequence[str],
    relevant: Sequence[Mapping[str, float]],
    k: int = 10,
) -> dict[str, float]:
    """Exact cosine search of every query over all documents, then nDCG@k, MRR@k and recall@k."""
    idx = top_k(queries, docs, k)
    ranked = [[doc_ids[j] for j in row] for row in idx]
    return {
        f"ndcg@{k}": ndcg_at_k(ranked, relevant, k),
        f"mrr@{k}": mrr_at_k(ranked, relevant, k),
        f"recall@{k}": recall_at_k(ranked, relevant, k),
    }


# ---------------------------------------------------------------------------------------------- bitext
def bitext_scores(source: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Row i of ``source`` translates row i of ``target``: nearest-neighbour accuracy and weighted F1."""
    from sklearn.metrics import f1_score

    if source.shape[0] != target.shape[0]:
        raise ValueError("bitext mining needs as many source as target sentences")
    pred = top_k(source, target, 1)[:, 0]
    gold = np.arange(source.shape[0])
    return {
        "accuracy": float(np.mean(pred == gold)),
        "f1": float(f1_score(gold, pred, average="weighted", zero_division=0)),
    }


# ---------------------------------------------------------------------------------------------- clustering
def _one_thread() -> Any:
    """Single-threaded OpenMP/BLAS: on small problems (and busy machines) their thread pools spin
    far longer than the work takes (k-means on 10k vectors: 0.4 s on one thread, 10 s on a loaded pool)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def kmeans_v_measure(
    vectors: np.ndarray, labels: Sequence[str | int], seeds: Sequence[int] = (0, 1, 2, 3, 4), batch_size: int = 500
) -> dict[str, float]:
    """V-measure of mini-batch k-means (k = number of distinct labels), mean and std over ``seeds``."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import v_measure_score

    y = np.asarray(labels)
    n_clusters = len(set(y.tolist()))
    if n_clusters < 2:
        raise ValueError("clustering needs at least two classes")
    # float64: float32 distance arithmetic differs between a 384-d vector and its 1024-d isometric image
    # by enough to flip a k-means step now and then; in float64 engine and service cluster alike
    x = normalize(vectors).astype(np.float64)
    values = []
    with _one_thread():
        for seed in seeds:
            km = MiniBatchKMeans(n_clusters=n_clusters, batch_size=batch_size, n_init="auto", random_state=seed)
            pred = km.fit_predict(x)
            values.append(v_measure_score(y, pred))
    return {"v_measure": float(np.mean(values)), "v_measure_std": float(np.std(values))}


# ---------------------------------------------------------------------------------------------- classification
def _logreg(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, random_state=seed)


def logreg_scores(
    train_x: np.ndarray,
    train_y: Sequence[str | int],
    test_x: np.ndarray,
    test_y: Sequence[str | int],
    seed: int = 0,
) -> dict[str, float]:
    """Logistic regression fitted on the train vectors; accuracy and macro F1 on the test vectors."""
    from sklearn.metrics import accuracy_score, f1_score

    clf = _logreg(seed)
    with _one_thread():
        clf.fit(normalize(train_x).astype(np.float64), np.asarray(train_y))
        pred = clf.predict(normalize(test_x).astype(np.float64))
    return {
        "accuracy": float(accuracy_score(np.asarray(test_y), pred)),
        "f1_macro": float(f1_score(np.asarray(test_y), pred, average="macro", zero_division=0)),
    }


def cv_logreg_scores(x: np.ndarray, y: Sequence[str | int], folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Cross-validated logistic regression: every item predicted by a model that never saw it.

    Stratified ``folds``-fold split (shuffled with ``seed``); classes with fewer members than folds
    are kept (scikit-learn warns, the metric stays defined). Accuracy and macro F1 over all items.
    """
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    labels = np.asarray(y)
    _, counts = np.unique(labels, return_counts=True)
    if len(counts) < 2:
        raise ValueError("classification needs at least two classes")
    folds = max(2, min(folds, int(counts.max())))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings(), _one_thread():
        warnings.filterwarnings("ignore", message="The least populated class")
        pred = cross_val_predict(_logreg(seed), normalize(x).astype(np.float64), labels, cv=cv)
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "f1_macro": float(f1_score(labels, pred, average="macro", zero_division=0)),
    }
