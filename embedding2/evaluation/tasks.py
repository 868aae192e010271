"""One evaluation per task type: a dataset and an embedding function in, :class:`TaskResult` rows out.

Which kind of text each side is (see :mod:`.encoders`): STS pairs, bitext, classification and clustering
texts are ``symmetric``; retrieval embeds queries as ``query`` and corpus texts as ``document``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from embedding2.evaluation import metrics
from embedding2.evaluation.data import (
    DatasetRef,
    load_bitext,
    load_labelled,
    load_pairs,
    load_retrieval,
    retrieval_runs,
    train_split,
)
from embedding2.evaluation.encoders import Kind
from embedding2.evaluation.report import TaskResult

# embeds groups of (texts, kind) together (so duplicates across groups are embedded once)
EmbedMany = Callable[[Sequence[tuple[Sequence[str], Kind]]], list[np.ndarray]]

DEFAULT_SEEDS = (0, 1, 2, 3, 4)


def _x100(scores: dict[str, float]) -> dict[str, float]:
    return {k: 100.0 * v for k, v in scores.items()}


def run_sts(ref: DatasetRef, embed: EmbedMany, split: str, limit: int | None) -> list[TaskResult]:
    t0 = time.perf_counter()
    data = load_pairs(ref, split, limit)
    a, b = embed([(data.sentences1, "symmetric"), (data.sentences2, "symmetric")])
    scores = _x100(metrics.sts_scores(a, b, data.gold))
    return [
        TaskResult(
            ref.name,
            "sts",
            "",
            split,
            "spearman",
            scores,
            len(data.gold),
            time.perf_counter() - t0,
            limit,
            {"skipped": data.skipped},
        )
    ]


def run_bitext(ref: DatasetRef, embed: EmbedMany, split: str, limit: int | None) -> list[TaskResult]:
    t0 = time.perf_counter()
    data = load_bitext(ref, split, limit)
    v1, v2 = embed([(data.texts1, "symmetric"), (data.texts2, "symmetric")])
    l1, l2 = data.languages
    out = []
    for (src, tgt), (sv, tv) in (((l1, l2), (v1, v2)), ((l2, l1), (v2, v1))):
        scores = _x100(metrics.bitext_scores(sv, tv))
        out.append(
            TaskResult(
                ref.name,
                "bitext",
                f"{src}->{tgt}",
                split,
                "accuracy",
                scores,
                len(data.texts1),
                time.perf_counter() - t0,
                limit,
                {"skipped": data.skipped},
            )
        )
    return out


def run_classification(ref: DatasetRef, embed: EmbedMany, split: str, limit: int | None) -> list[TaskResult]:
    t0 = time.perf_counter()
    test = load_labelled(ref, split, limit)
    train_name = train_split(ref, split)
    if train_name is not None:
        train = load_labelled(ref, train_name, limit)
        tv, trv = embed([(test.texts, "symmetric"), (train.texts, "symmetric")])
        scores = metrics.logreg_scores(trv, train.labels, tv, test.labels)
        protocol = f"logistic regression trained on {train_name} ({len(train.texts)} items)"
    else:
        (tv,) = embed([(test.texts, "symmetric")])
        scores = metrics.cv_logreg_scores(tv, test.labels)
        protocol = "logistic regression, stratified 5-fold cross-validation"
    return [
        TaskResult(
            ref.name,
            "classification",
            "",
            split,
            "accuracy",
            _x100(scores),
            len(test.texts),
            time.perf_counter() - t0,
            limit,
            {"protocol": protocol, "skipped": test.skipped},
        )
    ]


def run_clustering(
    ref: DatasetRef, embed: EmbedMany, split: str, limit: int | None, seeds: Sequence[int] = DEFAULT_SEEDS
) -> list[TaskResult]:
    t0 = time.perf_counter()
    data = load_labelled(ref, split, limit)
    (v,) = embed([(data.texts, "symmetric")])
    scores = _x100(metrics.kmeans_v_measure(v, data.labels, seeds))
    return [
        TaskResult(
            ref.name,
            "clustering",
            "",
            split,
            "v_measure",
            scores,
            len(data.texts),
            time.perf_counter() - t0,
            limit,
            {"seeds": list(seeds), "k": len(set(data.labels)), "skipped": data.skipped},
        )
    ]


def run_retrieval(ref: DatasetRef, embed: EmbedMany, split: str, limit: int | None) -> list[TaskResult]:
    out = []
    for qlang, dlang in retrieval_runs(ref):
        t0 = time.perf_counter()
        data = load_retrieval(ref, qlang, dlang, split, limit)
        qv, dv = embed([(data.queries, "query"), (data.docs, "document")])
        scores = _x100(metrics.retrieval_scores(qv, dv, data.doc_ids, data.relevant, k=10))
        subset = f"{qlang}->{dlang}" if qlang else ""
        out.append(
            TaskResult(
                ref.name,
                "retrieval",
                subset,
                split,
                "ndcg@10",
                scores,
                len(data.queries),
                time.perf_counter() - t0,
                limit,
                {"corpus": len(data.docs), "skipped": data.skipped},
            )
        )
    return out


RUNNERS: dict[str, Callable[[DatasetRef, EmbedMany, str, int | None], list[TaskResult]]] = {
    "sts": run_sts,
    "bitext": run_bitext,
    "classification": run_classification,
    "clustering": run_clustering,
    "retrieval": run_retrieval,
}


def run_task(
    ref: DatasetRef, task: str, embed: EmbedMany, split: str = "test", limit: int | None = None
) -> list[TaskResult]:
    """Evaluate ``task`` on ``ref``; a split the dataset lacks falls back to its only split."""
    if ref.kind != "retrieval" and split not in ref.splits and len(ref.splits) == 1:
        split = ref.splits[0]
    return RUNNERS[task](ref, embed, split, limit)
