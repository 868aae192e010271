"""Measures the quality of every scenario on ``../shared/evaldata`` (the figures in docs/scenarios.md).

    python -m embedding2.apps.quality                       # all scenarios, in-process e5-small
    python -m embedding2.apps.quality --tasks search,cluster
    python -m embedding2.apps.quality --base-url http://127.0.0.1:8000/api/paas/v4 --api-key KEY

Each scenario runs through the same code as its command, on the same :class:`Encoder`:

- search: cmrc2018-retrieval (zh -> zh, all 3,219 queries / 1,104 documents) and xquad-retrieval
  (zh questions -> en passages, 1,190 / 240): a :class:`SearchIndex` (chunks of <= 256 tokens, HNSW),
  nDCG@10 and MRR@10 of the HNSW ranking and of exact (brute-force cosine) search over the same
  chunks, and recall@10 of the HNSW top 10 against the exact top 10.
- cluster: V-measure of k-means (k = the number of labels, mean of 5 seeds) on thucnews-titles (a
  stratified sample of the test split, ``--titles-per-class`` per class) and csldcp-fewclue (all
  1,784 abstracts, 66 labels), next to TF-IDF (character 1-2-grams) + k-means on the same texts;
  plus the k that the automatic criterion (silhouette) chooses on thucnews.
- recommend: users whose interest is one thucnews category (history: 10 random titles of it), over a
  catalogue of the sampled titles; precision@10 = share of recommended titles in that category, for
  embeddings (centred, the default, and not), TF-IDF and random picks; with MMR (lambda 0.7) the
  precision and intra-list diversity; and a drift test (10 older titles of one category, then 5
  newer of another, the newer one being the target) with and without recency weighting.
- anomaly: one (then three) thucnews categories are normal: fit on titles of them from the
  validation split, score a test set of held-out normal titles and as many titles of other
  categories; AUROC for knn, lof and iforest on embeddings and on TF-IDF, averaged over rotations.
- kbqa: passage hit@5 and MRR@5 of :meth:`KnowledgeBase.retrieve` for the first 500 cmrc2018
  questions (one call per question, as a user would ask).

Vectors are cached in ``--cache`` (SQLite, per vector space), so a second run embeds nothing.
Results are printed as Markdown tables and written as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedding2.apps.encoders import Encoder, open_encoder

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "evaldata"
TASKS = ("search", "cluster", "recommend", "anomaly", "kbqa")
SEEDS = (0, 1, 2, 3, 4)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- data
def labelled(data: Path, name: str, split: str = "test") -> tuple[list[str], list[str]]:
    from embedding2.evaluation.data import classify_folder, load_labelled

    ref = classify_folder(data / name)
    assert ref is not None, f"{data / name} is not a dataset folder"
    d = load_labelled(ref, split)
    return d.texts, d.labels


def stratified(
    texts: Sequence[str], labels: Sequence[str], per_class: int, seed: int = 0
) -> tuple[list[str], list[str]]:
    """``per_class`` texts of each label, drawn at random (fixed seed), in label then file order."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    picked: list[int] = []
    for label in sorted(set(labels)):
        idx = np.flatnonzero(y == label)
        take = min(per_class, len(idx))
        picked.extend(sorted(rng.choice(idx, take, replace=False).tolist()))
    return [texts[i] for i in picked], [labels[i] for i in picked]


# ---------------------------------------------------------------------------------------------- search
def _ranked_ids(ranking: list[list[tuple[str, int, float]]]) -> list[list[str]]:
    return [[doc for doc, _, _ in row] for row in ranking]


def search_quality(encoder: Encoder, data: Path, work: Path, name: str, qlang: str, dlang: str) -> dict[str, Any]:
    from embedding2.apps.documents import Document
    from embedding2.apps.search import SearchIndex
    from embedding2.evaluation.data import classify_folder, load_retrieval
    from embedding2.evaluation.metrics import mrr_at_k, ndcg_at_k

    ref = classify_folder(data / name)
    assert ref is not None
    rd = load_retrieval(ref, qlang, dlang)
    label = f"{name} {qlang or 'zh'}->{dlang or 'zh'}"
    log(f"search {label}: {len(rd.docs)} documents, {len(rd.queries)} queries")
    slug = f"{name}-{qlang or 'x'}-{dlang or 'x'}-{encoder.key}".replace(":", "_").replace("/", "_")
    index = SearchIndex(work / "indexes" / slug, encoder)
    t0 = time.perf_counter()
    report = index.add(Document(i, t, name) for i, t in zip(rd.doc_ids, rd.docs, strict=True))
    build_s = time.perf_counter() - t0
    stats = index.stats()
    q = encoder.encode(rd.queries, "query")
    t0 = time.perf_counter()
    ann = index.rank(q, 10)
    ann_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = index.rank(q, 10, exact=True)
    exact_s = time.perf_counter() - t0
    ann_ids, exact_ids = _ranked_ids(ann), _ranked_ids(exact)
    overlap = [len(set(a) & set(e)) / max(1, len(e)) for a, e in zip(ann_ids, exact_ids, strict=True)]
    index.close()
    out = {
        "dataset": label,
        "documents": len(rd.docs),
        "queries": len(rd.queries),
        "chunks": stats["chunks"],
        "index_add": str(report),
        "index_add_s": round(build_s, 1),
        "ndcg@10_hnsw": 100 * ndcg_at_k(ann_ids, rd.relevant, 10),
        "ndcg@10_exact": 100 * ndcg_at_k(exact_ids, rd.relevant, 10),
        "mrr@10_hnsw": 100 * mrr_at_k(ann_ids, rd.relevant, 10),
        "mrr@10_exact": 100 * mrr_at_k(exact_ids, rd.relevant, 10),
        "recall@10_vs_exact": float(np.mean(overlap)),
        "ms_per_query_hnsw": 1000 * ann_s / len(rd.queries),
        "ms_per_query_exact": 1000 * exact_s / len(rd.queries),
    }
    out["ndcg_gap"] = out["ndcg@10_exact"] - out["ndcg@10_hnsw"]
    return out


# ---------------------------------------------------------------------------------------------- cluster
def v_measures(x: Any, labels: Sequence[str], k: int) -> tuple[float, float]:
    from sklearn.metrics import v_measure_score

    from embedding2.apps.cluster import kmeans

    values = [v_measure_score(labels, kmeans(x, k, seed=s)[0]) for s in SEEDS]
    return 100 * float(np.mean(values)), 100 * float(np.std(values))


def cluster_quality(encoder: Encoder, name: str, texts: list[str], labels: list[str]) -> dict[str, Any]:
    from embedding2.apps.cluster import choose_k
    from embedding2.apps.lexical import tfidf_matrix

    k = len(set(labels))
    log(f"cluster {name}: {len(texts)} texts, k={k}")
    vectors = encoder.encode(texts)
    emb, emb_sd = v_measures(vectors, labels, k)
    tfidf, tfidf_sd = v_measures(tfidf_matrix(texts), labels, k)
    out: dict[str, Any] = {
        "dataset": name,
        "texts": len(texts),
        "k": k,
        "v_measure_embedding": emb,
        "v_measure_embedding_std": emb_sd,
        "v_measure_tfidf": tfidf,
        "v_measure_tfidf_std": tfidf_sd,
    }
    if k <= 20:
        chosen, scores = choose_k(vectors, k_min=2, k_max=20)
        out["auto_k"] = chosen
        out["auto_k_silhouette"] = {str(kk): round(s, 4) for kk, s in scores.items()}
    return out


# ---------------------------------------------------------------------------------------------- recommend
def recommend_quality(
    encoder: Encoder, texts: list[str], labels: list[str], users_per_class: int = 20, history: int = 10, seed: int = 0
) -> dict[str, Any]:
    from embedding2.apps.lexical import tfidf_matrix
    from embedding2.apps.recommend import Recommender

    log(f"recommend: {len(texts)} items, {users_per_class} users per category")
    ids = [str(i) for i in range(len(texts))]
    y = np.asarray(labels)
    classes = sorted(set(labels))
    rng = np.random.default_rng(seed)
    users = []  # (target class, history ids)
    drift = []  # (target class, history ids: 10 of another class, then 5 of the target)
    for ci, c in enumerate(classes):
        members = np.flatnonzero(y == c)
        other = np.flatnonzero(y == classes[(ci + 1) % len(classes)])
        for _ in range(users_per_class):
            users.append((c, [ids[i] for i in rng.choice(members, history, replace=False)]))
            old = [ids[i] for i in rng.choice(other, 10, replace=False)]
            new = [ids[i] for i in rng.choice(members, 5, replace=False)]
            drift.append((c, old + new))
    vectors = encoder.encode(texts)
    systems = {
        "embedding": Recommender(ids, vectors),
        "embedding_raw": Recommender(ids, vectors, center=False),
        "tfidf": Recommender(ids, tfidf_matrix(texts)),
    }

    def precision(rec: Recommender, cases: list[tuple[str, list[str]]], **kw: Any) -> tuple[float, float]:
        p, div = [], []
        for c, hist in cases:
            got = rec.recommend(hist, 10, **kw)
            p.append(np.mean([labels[int(r.id)] == c for r in got]))
            div.append(rec.diversity([r.id for r in got]))
        return 100 * float(np.mean(p)), float(np.mean(div))

    out: dict[str, Any] = {"items": len(texts), "users": len(users), "history": history}
    for name, rec in systems.items():
        out[f"p@10_{name}"], out[f"diversity_{name}"] = precision(rec, users)
        out[f"p@10_{name}_mmr0.7"], out[f"diversity_{name}_mmr0.7"] = precision(rec, users, mmr_lambda=0.7)
        out[f"drift_p@10_{name}_recency"], _ = precision(rec, drift, half_life=5.0)
        out[f"drift_p@10_{name}_uniform"], _ = precision(rec, drift, half_life=None)
    # random: 10 unseen items drawn uniformly
    rand = []
    for c, hist in users:
        seen = {int(h) for h in hist}
        pool = np.array([i for i in range(len(texts)) if i not in seen])
        pick = rng.choice(pool, 10, replace=False)
        rand.append(np.mean(y[pick] == c))
    out["p@10_random"] = 100 * float(np.mean(rand))
    return out


# ---------------------------------------------------------------------------------------------- anomaly
def anomaly_quality(
    encoder: Encoder,
    train: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    n_normal_classes: int,
    seed: int = 0,
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from embedding2.apps.anomaly import METHODS, AnomalyDetector
    from embedding2.apps.lexical import tfidf_vectorizer

    train_texts, train_labels = train
    test_texts, test_labels = test
    classes = sorted(set(test_labels))
    log(f"anomaly: {n_normal_classes} normal categories, {len(train_texts)} train / {len(test_texts)} test titles")
    train_vec = encoder.encode(train_texts)
    test_vec = encoder.encode(test_texts)
    ytr, yte = np.asarray(train_labels), np.asarray(test_labels)
    rng = np.random.default_rng(seed)
    aucs: dict[str, list[float]] = {}
    for ci in range(len(classes)):
        normal = {classes[(ci + j) % len(classes)] for j in range(n_normal_classes)}
        tr = np.flatnonzero(np.isin(ytr, list(normal)))
        te_norm = np.flatnonzero(np.isin(yte, list(normal)))
        te_anom = np.flatnonzero(~np.isin(yte, list(normal)))
        te_anom = rng.choice(te_anom, min(len(te_norm), len(te_anom)), replace=False)
        te = np.concatenate([te_norm, te_anom])
        truth = np.concatenate([np.zeros(len(te_norm)), np.ones(len(te_anom))])
        vectorizer = tfidf_vectorizer().fit([train_texts[i] for i in tr])
        feats = {
            "embedding": (train_vec[tr], test_vec[te]),
            "tfidf": (
                vectorizer.transform([train_texts[i] for i in tr]),
                vectorizer.transform([test_texts[i] for i in te]),
            ),
        }
        for fname, (xtr, xte) in feats.items():
            for method in METHODS:
                det = AnomalyDetector(method).fit(xtr)
                aucs.setdefault(f"{method}_{fname}", []).append(100 * float(roc_auc_score(truth, det.score(xte))))
                if method == "knn" and fname == "embedding":
                    flagged = det.score(xte) > det.threshold
                    aucs.setdefault("flag_rate_normal", []).append(100 * float(flagged[truth == 0].mean()))
                    aucs.setdefault("flag_rate_anomalies", []).append(100 * float(flagged[truth == 1].mean()))
    out: dict[str, Any] = {"normal_categories": n_normal_classes, "rotations": len(classes)}
    out.update({f"auroc_{k}" if not k.startswith("flag") else k: float(np.mean(v)) for k, v in aucs.items()})
    return out


# ---------------------------------------------------------------------------------------------- kbqa
def kbqa_quality(encoder: Encoder, data: Path, work: Path, n_questions: int = 500) -> dict[str, Any]:
    from embedding2.apps.kbqa import KnowledgeBase
    from embedding2.evaluation.data import classify_folder, load_retrieval

    ref = classify_folder(data / "cmrc2018-retrieval")
    assert ref is not None
    rd = load_retrieval(ref)
    slug = f"cmrc2018-retrieval-x-x-{encoder.key}".replace(":", "_").replace("/", "_")
    kb = KnowledgeBase(work / "indexes" / slug, encoder)
    if len(kb.index) != len(rd.docs):
        from embedding2.apps.documents import Document

        kb.add(Document(i, t, "cmrc2018") for i, t in zip(rd.doc_ids, rd.docs, strict=True))
    hits, rr = [], []
    t0 = time.perf_counter()
    n = min(n_questions, len(rd.queries))
    for question, rel in zip(rd.queries[:n], rd.relevant[:n], strict=True):
        ans = kb.ask(question, 5, generate=False)
        ranks = [i for i, h in enumerate(ans.passages) if rel.get(h.doc_id, 0) > 0]
        hits.append(1.0 if ranks else 0.0)
        rr.append(1.0 / (ranks[0] + 1) if ranks else 0.0)
    elapsed = time.perf_counter() - t0
    kb.close()
    return {
        "dataset": "cmrc2018-retrieval",
        "questions": n,
        "hit@5": 100 * float(np.mean(hits)),
        "mrr@5": 100 * float(np.mean(rr)),
        "ms_per_question": 1000 * elapsed / n,
    }


# ---------------------------------------------------------------------------------------------- report
def _f(x: Any, nd: int = 1) -> str:
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def markdown(results: dict[str, Any]) -> str:
    from embedding2.evaluation.report import markdown_table

    parts = [f"encoder: `{results['encoder']}`"]
    if "search" in results:
        rows = [
            [
                r["dataset"],
                f"{r['documents']} / {r['chunks']} / {r['queries']}",
                _f(r["ndcg@10_exact"], 2),
                _f(r["ndcg@10_hnsw"], 2),
                _f(r["ndcg_gap"], 2),
                _f(r["recall@10_vs_exact"], 4),
                _f(r["mrr@10_hnsw"], 2),
                f"{r['ms_per_query_hnsw']:.2f} / {r['ms_per_query_exact']:.2f}",
            ]
            for r in results["search"]
        ]
        header = [
            "search",
            "docs / chunks / queries",
            "nDCG@10 exact",
            "nDCG@10 HNSW",
            "gap",
            "recall@10 vs exact",
            "MRR@10 HNSW",
            "ms/query HNSW / exact",
        ]
        parts.append(markdown_table(header, rows))
    if "cluster" in results:
        rows = [
            [
                r["dataset"],
                str(r["texts"]),
                str(r["k"]),
                f"{r['v_measure_embedding']:.1f} ± {r['v_measure_embedding_std']:.1f}",
                f"{r['v_measure_tfidf']:.1f} ± {r['v_measure_tfidf_std']:.1f}",
                str(r.get("auto_k", "-")),
            ]
            for r in results["cluster"]
        ]
        header = ["clustering", "texts", "k", "V-measure embeddings", "V-measure TF-IDF", "auto k (silhouette)"]
        parts.append(markdown_table(header, rows))
    if "recommend" in results:
        r = results["recommend"]
        rows = [
            [
                label,
                _f(r[f"p@10_{name}"]),
                _f(r[f"p@10_{name}_mmr0.7"]),
                f"{r[f'diversity_{name}']:.3f} / {r[f'diversity_{name}_mmr0.7']:.3f}",
                f"{r[f'drift_p@10_{name}_recency']:.1f} / {r[f'drift_p@10_{name}_uniform']:.1f}",
            ]
            for name, label in (
                ("embedding", "embeddings (centred)"),
                ("embedding_raw", "embeddings, not centred"),
                ("tfidf", "TF-IDF"),
            )
            if f"p@10_{name}" in r
        ]
        rows.append(["random", _f(r["p@10_random"]), "-", "-", "-"])
        header = ["recommendation", "P@10", "P@10 MMR 0.7", "diversity plain / MMR", "drift P@10 recency / uniform"]
        parts.append(markdown_table(header, rows))
    if "anomaly" in results:
        rows = []
        for r in results["anomaly"]:
            for fname in ("embedding", "tfidf"):
                rows.append(
                    [
                        str(r["normal_categories"]),
                        fname,
                        *[_f(r[f"auroc_{m}_{fname}"]) for m in ("knn", "lof", "iforest")],
                        f"{r['flag_rate_normal']:.1f} / {r['flag_rate_anomalies']:.1f}"
                        if fname == "embedding"
                        else "-",
                    ]
                )
        header = [
            "normal categories",
            "features",
            "AUROC knn",
            "AUROC lof",
            "AUROC iforest",
            "flagged % normal / anomalies",
        ]
        parts.append(markdown_table(header, rows))
    if "kbqa" in results:
        r = results["kbqa"]
        rows = [[r["dataset"], str(r["questions"]), _f(r["hit@5"]), _f(r["mrr@5"]), _f(r["ms_per_question"])]]
        parts.append(markdown_table(["kbqa retrieval", "questions", "hit@5", "MRR@5", "ms/question"], rows))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedding2.apps.quality", description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated: {', '.join(TASKS)}")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the evaldata folder")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "apps-quality", help="vectors and indexes")
    parser.add_argument("--out", type=Path, help="JSON results (default: <cache>/quality.json)")
    parser.add_argument("--titles-per-class", type=int, default=300, help="thucnews titles per category (test split)")
    parser.add_argument("--model", help="in-process backing model (default: e5-small)")
    parser.add_argument("--model-cache-dir", type=Path, help="converted packs and ONNX exports")
    parser.add_argument("--base-url", help="measure through this Embedding-2-compatible endpoint instead")
    parser.add_argument("--api-key")
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = set(tasks) - set(TASKS)
    if unknown:
        parser.error(f"unknown tasks: {', '.join(sorted(unknown))}")
    from embedding2.settings import load_settings

    settings = None if args.base_url else load_settings(model=args.model, cache_dir=args.model_cache_dir)
    encoder = open_encoder(
        base_url=args.base_url, api_key=args.api_key, settings=settings, cache=args.cache / "vectors"
    )
    out_path = args.out or args.cache / "quality.json"
    results: dict[str, Any] = json.loads(out_path.read_text()) if out_path.is_file() else {}
    if results.get("encoder") not in (None, encoder.key):
        results = {}
    results["encoder"] = encoder.key
    data: Path = args.data
    t_start = time.perf_counter()
    try:
        if "search" in tasks:
            results["search"] = [
                search_quality(encoder, data, args.cache, "cmrc2018-retrieval", "", ""),
                search_quality(encoder, data, args.cache, "xquad-retrieval", "zh", "en"),
            ]
        if {"cluster", "recommend", "anomaly"} & set(tasks):
            titles = stratified(*labelled(data, "thucnews-titles", "test"), args.titles_per_class)
        if "cluster" in tasks:
            results["cluster"] = [
                cluster_quality(encoder, f"thucnews-titles ({args.titles_per_class}/category)", *titles),
                cluster_quality(encoder, "csldcp-fewclue", *labelled(data, "csldcp-fewclue", "test")),
            ]
        if "recommend" in tasks:
            results["recommend"] = recommend_quality(encoder, *titles)
        if "anomaly" in tasks:
            train = stratified(*labelled(data, "thucnews-titles", "validation"), args.titles_per_class)
            results["anomaly"] = [anomaly_quality(encoder, train, titles, n) for n in (1, 3)]
        if "kbqa" in tasks:
            results["kbqa"] = kbqa_quality(encoder, data, args.cache)
    finally:
        encoder.close()
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, ensure_ascii=False, indent=2))
    print(markdown(results))
    log(f"results written to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
