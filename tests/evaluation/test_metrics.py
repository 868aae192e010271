"""The evaluation metrics on hand-checkable cases, and against scipy / scikit-learn where they have them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score, ndcg_score, v_measure_score

from embedding2.evaluation import metrics


def unit(angle_deg: float) -> list[float]:
    a = math.radians(angle_deg)
    return [math.cos(a), math.sin(a)]


def test_pair_cosines_hand_values() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [5.0, 0.0], [-3.0, -4.0]])
    np.testing.assert_allclose(metrics.pair_cosines(a, b), [0.0, 1 / math.sqrt(2), -1.0], atol=1e-7)


def test_sts_spearman_hand_cases() -> None:
    # second vectors at growing angles from the first: cosines fall as the angle grows
    a = np.array([unit(0)] * 5)
    b = np.array([unit(d) for d in (0, 20, 45, 70, 90)])
    assert metrics.sts_scores(a, b, [5, 4, 3, 2, 1])["spearman"] == pytest.approx(1.0)
    assert metrics.sts_scores(a, b, [1, 2, 3, 4, 5])["spearman"] == pytest.approx(-1.0)
    # one swapped neighbour pair out of five: rho = 1 - 6*2/(5*24) = 0.9
    assert metrics.sts_scores(a, b, [5, 4, 2, 3, 1])["spearman"] == pytest.approx(0.9)


def test_sts_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    gold = rng.integers(0, 2, size=200)  # 0/1 labels, as LCQMC/BQ/ATEC/PAWSX: heavy ties
    cos = (a / np.linalg.norm(a, axis=1, keepdims=True) * (b / np.linalg.norm(b, axis=1, keepdims=True))).sum(1)
    cos = np.round(cos, 6)  # similarities are compared at 1e-6
    got = metrics.sts_scores(a, b, gold)
    assert got["spearman"] == pytest.approx(stats.spearmanr(cos, gold).statistic, abs=1e-9)
    assert got["pearson"] == pytest.approx(stats.pearsonr(cos, gold).statistic, abs=1e-9)


def test_float_noise_below_1e6_does_not_reorder_pairs() -> None:
    a = np.array([unit(0)] * 4)
    b = np.array([unit(d) for d in (10, 20, 30, 40)])
    gold = [0, 1, 0, 1]
    base = metrics.sts_scores(a, b, gold)["spearman"]
    # perturb the second vectors by ~1e-8: the cosines move far less than 1e-6
    noisy = b + np.random.default_rng(0).normal(scale=1e-8, size=b.shape)
    assert metrics.sts_scores(a, noisy, gold)["spearman"] == base
    # two documents 1e-8 apart are a tie, broken by corpus order
    docs = np.array([unit(1e-6), unit(0)])
    assert metrics.top_k(np.array([unit(0)]), docs, 2).tolist() == [[0, 1]]


def test_ndcg_mrr_recall_hand_cases() -> None:
    ranked = [["d1", "d2", "d3"], ["d3", "d1", "d2"], ["d1", "d2", "d3"]]
    relevant = [{"d2": 1.0}, {"d3": 1.0, "d2": 1.0}, {"d9": 1.0}]
    # query 1: hit at rank 2 -> 1/log2(3); query 2: hits at ranks 1 and 3 of ideal (1 + 1/log2 3);
    # query 3: its relevant document is not retrieved -> 0
    q1 = 1 / math.log2(3)
    q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert metrics.ndcg_at_k(ranked, relevant, k=10) == pytest.approx((q1 + q2 + 0) / 3)
    assert metrics.mrr_at_k(ranked, relevant, k=10) == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert metrics.recall_at_k(ranked, relevant, k=10) == pytest.approx((1 + 1 + 0) / 3)
    # a cut-off of 1 only sees the first document
    assert metrics.mrr_at_k(ranked, relevant, k=1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(ranked, relevant, k=1) == pytest.approx((0 + 0.5 + 0) / 3)


def test_queries_without_judgements_are_not_counted() -> None:
    assert metrics.ndcg_at_k([["a"], ["b"]], [{"a": 1.0}, {}], k=10) == pytest.approx(1.0)
    assert metrics.mrr_at_k([["a"], ["b"]], [{"a": 1.0}, {"b": 0.0}], k=10) == pytest.approx(1.0)


def test_ndcg_matches_sklearn_on_graded_relevance() -> None:
    rng = np.random.default_rng(7)
    n_q, n_d = 30, 25
    rel = rng.integers(0, 4, size=(n_q, n_d)).astype(float)
    rel[:, 0] = np.maximum(rel[:, 0], 1)  # every query has a relevant document
    scores = rng.permutation(n_q * n_d).reshape(n_q, n_d).astype(float)  # distinct: no ties
    ids = [f"d{j}" for j in range(n_d)]
    ranked = [[ids[j] for j in np.argsort(-row)] for row in scores]
    judged = [{ids[j]: rel[i, j] for j in range(n_d) if rel[i, j] > 0} for i in range(n_q)]
    for k in (1, 5, 10):
        assert metrics.ndcg_at_k(ranked, judged, k) == pytest.approx(ndcg_score(rel, scores, k=k), abs=1e-9)


def test_exact_search_ranks_by_cosine_and_breaks_ties_by_order() -> None:
    docs = np.array([unit(90), unit(10), unit(0), unit(0), unit(45)])
    queries = np.array([unit(0), unit(90)])
    top = metrics.top_k(queries, docs, k=3)
    assert top.tolist() == [[2, 3, 1], [0, 4, 1]]
    scores = metrics.retrieval_scores(queries, docs, ["a", "b", "c", "d", "e"], [{"d": 1.0}, {"b": 1.0}], k=2)
    # query 1 finds d at rank 2; query 2 misses b in its top 2
    assert scores["mrr@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert scores["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 2)


def test_bitext_accuracy_and_f1() -> None:
    target = np.eye(4)
    assert metrics.bitext_scores(target.copy(), target) == {"accuracy": 1.0, "f1": 1.0}
    source = target[[1, 0, 2, 3]]  # the first two sentences find each other's translation
    got = metrics.bitext_scores(source, target)
    assert got["accuracy"] == pytest.approx(0.5)
    pred = [1, 0, 2, 3]
    assert got["f1"] == pytest.approx(f1_score(range(4), pred, average="weighted", zero_division=0))


def test_clustering_v_measure() -> None:
    rng = np.random.default_rng(3)
    centers = np.eye(8)[:4] * 10
    labels = np.repeat(["a", "b", "c", "d"], 30)
    x = centers[np.repeat(np.arange(4), 30)] + rng.normal(scale=0.05, size=(120, 8))
    got = metrics.kmeans_v_measure(x, labels, seeds=(0, 1, 2))
    assert got["v_measure"] == pytest.approx(1.0)
    assert got["v_measure_std"] == pytest.approx(0.0)
    # unrelated labels: V-measure near 0, and exactly sklearn's value for one seed
    noise = rng.normal(size=(120, 8))
    one = metrics.kmeans_v_measure(noise, labels, seeds=(5,))["v_measure"]
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # same result on any thread count; one thread is fast on a busy machine
        km = MiniBatchKMeans(4, batch_size=500, n_init="auto", random_state=5)
        pred = km.fit_predict(metrics.normalize(noise))
    assert one == pytest.approx(v_measure_score(labels, pred))
    assert one < 0.2


def test_classification_with_a_train_split_and_cross_validated() -> None:
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1, 2], 40)
    x = np.eye(6)[y] + rng.normal(scale=0.1, size=(120, 6))
    got = metrics.logreg_scores(x[::2], y[::2], x[1::2], y[1::2])
    assert got["accuracy"] == pytest.approx(1.0)
    assert metrics.cv_logreg_scores(x, y)["accuracy"] == pytest.approx(1.0)
    # labels unrelated to the vectors: near chance (1/3), far from the separable case
    shuffled = rng.permutation(y)
    assert metrics.cv_logreg_scores(x, shuffled)["accuracy"] < 0.6


def test_cross_validation_survives_rare_classes() -> None:
    rng = np.random.default_rng(5)
    y = np.array([0] * 20 + [1] * 20 + [2])  # a class with one member
    x = rng.normal(size=(41, 4))
    got = metrics.cv_logreg_scores(x, y)
    assert 0.0 <= got["accuracy"] <= 1.0
