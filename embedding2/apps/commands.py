"""The scenario subcommands: ``embedding2 search | cluster | recommend | anomaly | kb``.

Registered into the main CLI by :mod:`embedding2.cli`. This module is imported by every ``embedding2``
invocation, so it imports only the standard library at the top; each handler imports what it needs.

Where the vectors come from is chosen by one option: without ``--base-url`` the in-process engine
(``--model`` names the backing model, a pack or a folder); with ``--base-url URL`` any
Embedding-2-compatible endpoint (``--model`` then names the served model, default ``embedding-2``;
``--api-key`` or ``EMBEDDING2_API_KEY`` its key).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from embedding2.cli import _engine_args, settings_from_args


# ---------------------------------------------------------------------------------------------- options
def _encoder_args(p: argparse.ArgumentParser) -> None:
    _engine_args(p)
    p.add_argument(
        "--base-url",
        help="use this Embedding-2-compatible endpoint (e.g. http://127.0.0.1:8000/api/paas/v4) instead of "
        "the in-process engine; --model then names the served model (default embedding-2)",
    )
    p.add_argument("--api-key", help="the endpoint's API key (default: $EMBEDDING2_API_KEY)")
    p.add_argument(
        "--served-model",
        help="in-process: produce this served id's vectors (embedding-2: 1024 dims, same cosines) instead of "
        "the model's native ones; needed to share an index with an endpoint",
    )
    p.add_argument("--vector-cache", type=Path, help="keep vectors in this SQLite file (or folder) and reuse them")


def open_encoder_from_args(args: argparse.Namespace) -> Any:
    from embedding2.apps.encoders import open_encoder

    if args.base_url:
        return open_encoder(
            base_url=args.base_url,
            api_key=args.api_key or os.environ.get("EMBEDDING2_API_KEY"),
            remote_model=args.model or "embedding-2",
            settings=settings_from_args(args),
            cache=args.vector_cache,
        )
    return open_encoder(settings=settings_from_args(args), served_model=args.served_model, cache=args.vector_cache)


def _text_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-field", help="table column holding the text (default: text, content, body ...)")
    p.add_argument("--id-field", help="table column holding the id (default: _id, id, doc_id, item_id)")


def _emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def _short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------- search
def _open_index(args: argparse.Namespace, *, create: bool) -> Any:
    from embedding2.apps.search import SearchIndex

    encoder = open_encoder_from_args(args)
    try:
        return SearchIndex(args.index, encoder, chunk_tokens=getattr(args, "chunk_tokens", None), create=create)
    except BaseException:
        encoder.close()
        raise


def _add_paths(index: Any, args: argparse.Namespace) -> Any:
    from embedding2.apps.documents import read_documents

    docs = read_documents(args.paths, text_field=args.text_field, id_field=args.id_field)
    progress = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="doc", desc="indexing", file=sys.stderr)
        progress = bar.update
    if args.sync:
        return index.sync(docs, args.paths, progress=progress)
    return index.add(docs, progress=progress)


def cmd_search_index(args: argparse.Namespace) -> int:
    index = _open_index(args, create=True)
    try:
        report = _add_paths(index, args)
        print(f"{args.index}: {report}")
        print(json.dumps(index.stats(), ensure_ascii=False))
    finally:
        index.close()
        index.encoder.close()
    return 0


def _print_hits(hits: list[Any]) -> None:
    for i, h in enumerate(hits, 1):
        title = h.meta.get("title")
        where = f"{h.source}" + (f" — {title}" if title and title not in h.source else "")
        print(f"{i:2d}. {h.score:.4f}  {h.doc_id}  [chunk {h.chunk}, chars {h.start}-{h.end}]  {_short(where, 80)}")
        print(f"    {_short(h.text, 160)}")


def cmd_search_query(args: argparse.Namespace) -> int:
    index = _open_index(args, create=False)
    try:
        results = index.search(list(args.queries), args.k, exact=args.exact)
        if args.json:
            _emit_json(
                [
                    {"query": q, "hits": [h.as_dict() for h in hits]}
                    for q, hits in zip(args.queries, results, strict=True)
                ]
            )
        else:
            for q, hits in zip(args.queries, results, strict=True):
                print(f"query: {q}")
                _print_hits(hits)
    finally:
        index.close()
        index.encoder.close()
    return 0


def cmd_search_delete(args: argparse.Namespace) -> int:
    index = _open_index(args, create=False)
    try:
        ids = list(args.ids)
        for src in args.source or []:
            ids.extend(index.ids_from(src))
        n = index.delete(ids)
        print(f"{args.index}: {n} documents deleted, {len(index)} left")
    finally:
        index.close()
        index.encoder.close()
    return 0


def cmd_search_info(args: argparse.Namespace) -> int:
    index = _open_index(args, create=False)
    try:
        if args.rebuild:
            index.rebuild()
        _emit_json(index.stats())
    finally:
        index.close()
        index.encoder.close()
    return 0


# ---------------------------------------------------------------------------------------------- cluster
def cmd_cluster(args: argparse.Namespace) -> int:
    from embedding2.apps.cluster import cluster_texts, save_map
    from embedding2.apps.documents import read_records

    records = read_records(args.file, text_field=args.text_field, id_field=args.id_field)
    texts = [r.text for r in records]
    encoder = open_encoder_from_args(args)
    try:
        vectors = encoder.encode(texts)
    finally:
        encoder.close()
    result = cluster_texts(
        texts, vectors, args.k, k_max=args.k_max, seed=args.seed, n_representatives=args.top, n_keywords=args.keywords
    )
    if args.json:
        _emit_json(
            {
                "k": result.k,
                "k_scores": result.k_scores,
                "clusters": [
                    {
                        "cluster": c.id,
                        "size": c.size,
                        "keywords": c.keywords,
                        "representatives": [{"id": records[i].id, "text": texts[i]} for i in c.representatives],
                    }
                    for c in result.clusters
                ],
            }
        )
    else:
        how = "given" if not result.k_scores else "chosen by the highest mean silhouette (cosine)"
        print(f"{len(texts)} texts, k = {result.k} ({how})")
        if result.k_scores:
            print("  silhouette by k: " + ", ".join(f"{k}: {s:.3f}" for k, s in sorted(result.k_scores.items())))
        for c in result.clusters:
            print(
                f"\ncluster {c.id}: {c.size} texts ({100 * c.size / len(texts):.1f}%)  keywords: {' '.join(c.keywords)}"
            )
            for i in c.representatives:
                print(f"  - {_short(texts[i])}")
    if args.out:
        with Path(args.out).open("w", encoding="utf-8") as f:
            f.write("id\tcluster\ttext\n")
            for r, label in zip(records, result.labels, strict=True):
                f.write(f"{r.id}\t{int(label)}\t{' '.join(r.text.split())}\n")
        print(f"labels written to {args.out}", file=sys.stderr)
    if args.map:
        path = save_map(vectors, result.labels, args.map, clusters=result.clusters, method=args.projection)
        print(f"map saved to {path}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- recommend
def _history(args: argparse.Namespace) -> tuple[list[str], list[float] | None]:
    if args.history:
        return [h.strip() for h in args.history.split(",") if h.strip()], None
    ids: list[str] = []
    stamps: list[float] = []
    with Path(args.history_file).open(encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0].strip():
                ids.append(parts[0].strip())
                if len(parts) > 1 and parts[1].strip():
                    stamps.append(float(parts[1]))
    return ids, (stamps if stamps and len(stamps) == len(ids) else None)


def cmd_recommend(args: argparse.Namespace) -> int:
    from embedding2.apps.documents import read_records
    from embedding2.apps.recommend import Recommender

    records = read_records(args.items, text_field=args.text_field, id_field=args.id_field)
    encoder = open_encoder_from_args(args)
    try:
        vectors = encoder.encode([r.text for r in records])
    finally:
        encoder.close()
    rec = Recommender([r.id for r in records], vectors, center=not args.no_center)
    text_of = {r.id: r.text for r in records}
    if args.like:
        recs = rec.more_like_this(args.like, args.k, mmr_lambda=args.mmr, pool=args.pool)
        header = f"more like {args.like}: {_short(text_of.get(args.like, ''), 80)}"
    else:
        history, stamps = _history(args)
        half_life = None if args.half_life <= 0 else args.half_life
        recs = rec.recommend(
            history, args.k, half_life=half_life, timestamps=stamps, mmr_lambda=args.mmr, pool=args.pool
        )
        header = f"recommended from a history of {len(history)} items (newest: {history[-1]})"
    if args.json:
        _emit_json([{"id": r.id, "score": round(r.score, 6), "text": text_of[r.id]} for r in recs])
    else:
        print(header + (f", MMR lambda {args.mmr}" if args.mmr is not None else ""))
        for i, r in enumerate(recs, 1):
            print(f"{i:2d}. {r.score:.4f}  {r.id}  {_short(text_of[r.id])}")
        print(f"diversity (mean pairwise cosine distance): {rec.diversity([r.id for r in recs]):.3f}")
    return 0


# ---------------------------------------------------------------------------------------------- anomaly
def cmd_anomaly_fit(args: argparse.Namespace) -> int:
    from embedding2.apps.anomaly import AnomalyDetector
    from embedding2.apps.documents import read_records

    records = read_records(args.file, text_field=args.text_field, id_field=args.id_field)
    encoder = open_encoder_from_args(args)
    try:
        vectors = encoder.encode([r.text for r in records])
        key = encoder.key
    finally:
        encoder.close()
    det = AnomalyDetector(args.method, n_neighbors=args.neighbors, percentile=args.percentile).fit(vectors)
    det.encoder_key = key
    det.save(args.detector)
    print(
        f"fitted {args.method} on {len(records)} normal texts; threshold {det.threshold:.4f} "
        f"(percentile {args.percentile:g} of their scores); saved to {args.detector}"
    )
    return 0


def cmd_anomaly_score(args: argparse.Namespace) -> int:
    from embedding2.apps.anomaly import AnomalyDetector
    from embedding2.apps.documents import read_records

    det = AnomalyDetector.load(args.detector)
    records = read_records(args.file, text_field=args.text_field, id_field=args.id_field)
    encoder = open_encoder_from_args(args)
    try:
        if det.encoder_key and det.encoder_key != encoder.key:
            print(f"warning: detector fitted with {det.encoder_key}, scoring with {encoder.key}", file=sys.stderr)
        vectors = encoder.encode([r.text for r in records])
    finally:
        encoder.close()
    scores, flags = det.flag(vectors)
    order = sorted(range(len(records)), key=lambda i: -scores[i])
    if args.out:
        with Path(args.out).open("w", encoding="utf-8") as f:
            f.write("id\tscore\tflagged\ttext\n")
            for r, s, fl in zip(records, scores, flags, strict=True):
                f.write(f"{r.id}\t{s:.6f}\t{int(fl)}\t{' '.join(r.text.split())}\n")
    print(f"{int(flags.sum())} of {len(records)} texts flagged (score > {det.threshold:.4f}); most anomalous first:")
    for i in order[: args.top]:
        mark = "!" if flags[i] else " "
        print(f"{mark} {scores[i]:.4f}  {records[i].id}  {_short(records[i].text)}")
    return 0


# ---------------------------------------------------------------------------------------------- kb
def cmd_kb_add(args: argparse.Namespace) -> int:
    args.index = args.kb
    return cmd_search_index(args)


def cmd_kb_ask(args: argparse.Namespace) -> int:
    from embedding2.apps.kbqa import ChatConfig, KnowledgeBase

    chat = None
    if not args.no_generate:
        chat = ChatConfig.from_env(base_url=args.chat_base_url, model=args.chat_model, api_key=args.chat_api_key)
    encoder = open_encoder_from_args(args)
    try:
        with KnowledgeBase(args.kb, encoder, chat=chat, create=False) as kb:
            answer = kb.ask(args.question, args.k)
    finally:
        encoder.close()
    if args.json:
        _emit_json(answer.as_dict())
        return 0
    if answer.answer is not None:
        print(f"answer ({answer.model}):\n{answer.answer}\n")
    print("passages:")
    _print_hits(answer.passages)
    if answer.answer is None and not args.no_generate:
        print("\n(no chat endpoint configured: set --chat-base-url or EMBEDDING2_CHAT_BASE_URL for a generated answer)")
    return 0


# ---------------------------------------------------------------------------------------------- parser
def register(subparsers: Any) -> None:
    """Add ``search``, ``cluster``, ``recommend``, ``anomaly`` and ``kb`` to the ``embedding2`` command."""
    # search
    search = subparsers.add_parser("search", help="semantic search: build, update and query a persistent index")
    ssub = search.add_subparsers(dest="search_command", required=True)
    p = ssub.add_parser(
        "index", help="add files or folders (txt, md, jsonl, csv, tsv) to an index; updates changed ones"
    )
    p.add_argument("paths", nargs="+", type=Path, help="files or folders (walked recursively)")
    p.add_argument("--index", type=Path, required=True, help="index folder (created if absent)")
    p.add_argument("--sync", action="store_true", help="also delete documents of these paths that are gone")
    p.add_argument("--chunk-tokens", type=int, help="chunk size aimed at, in tokens (default 256; limit 512)")
    _text_args(p)
    _encoder_args(p)
    p.set_defaults(func=cmd_search_index)
    p = ssub.add_parser("query", help="the best documents for one or more queries")
    p.add_argument("queries", nargs="+", help="query texts")
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("-k", type=int, default=5, help="documents per query (default 5)")
    p.add_argument("--exact", action="store_true", help="brute-force cosine over every chunk instead of the HNSW graph")
    p.add_argument("--json", action="store_true")
    _encoder_args(p)
    p.set_defaults(func=cmd_search_query)
    p = ssub.add_parser("delete", help="delete documents by id, or every document read from a file or folder")
    p.add_argument("ids", nargs="*", help="document ids")
    p.add_argument("--source", action="append", type=Path, help="a file or folder whose documents to delete")
    p.add_argument("--index", type=Path, required=True)
    _encoder_args(p)
    p.set_defaults(func=cmd_search_delete)
    p = ssub.add_parser("info", help="what an index holds (and --rebuild its HNSW graph)")
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--rebuild", action="store_true", help="rebuild the graph from the stored vectors")
    _encoder_args(p)
    p.set_defaults(func=cmd_search_info)

    # cluster
    p = subparsers.add_parser("cluster", help="cluster the texts of a file; sizes, keywords, examples, a 2-D map")
    p.add_argument("file", type=Path, help="one text per line (txt), or a jsonl/csv/tsv table")
    p.add_argument("-k", type=int, help="number of clusters (default: chosen by silhouette between 2 and --k-max)")
    p.add_argument("--k-max", type=int, default=20)
    p.add_argument("--top", type=int, default=3, help="representative texts per cluster")
    p.add_argument("--keywords", type=int, default=8, help="keywords per cluster")
    p.add_argument("--map", type=Path, help="save a 2-D map of the clusters to this PNG")
    p.add_argument("--projection", choices=["auto", "tsne", "pca"], default="auto")
    p.add_argument("--out", type=Path, help="write id, cluster and text per line to this TSV")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    _text_args(p)
    _encoder_args(p)
    p.set_defaults(func=cmd_cluster)

    # recommend
    p = subparsers.add_parser("recommend", help="recommend unseen items from a history, or items like one item")
    p.add_argument("items", type=Path, help="the catalogue: a jsonl/csv/tsv table with id and text, or txt lines")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--history", help="comma-separated item ids the user saw, oldest first")
    who.add_argument("--history-file", type=Path, help="one item id per line, oldest first (optional TAB timestamp)")
    who.add_argument("--like", help="'more like this': items similar to this item id")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--mmr", type=float, help="re-rank for diversity with MMR at this lambda (1 = none, 0.5 = balanced)")
    p.add_argument("--pool", type=int, default=100, help="candidates MMR re-ranks")
    p.add_argument("--no-center", action="store_true", help="do not subtract the catalogue's mean vector first")
    p.add_argument(
        "--half-life", type=float, default=5.0, help="recency half-life in items (or seconds with timestamps); 0 = none"
    )
    p.add_argument("--json", action="store_true")
    _text_args(p)
    _encoder_args(p)
    p.set_defaults(func=cmd_recommend)

    # anomaly
    anomaly = subparsers.add_parser("anomaly", help="fit on normal texts, then score and flag new ones")
    asub = anomaly.add_subparsers(dest="anomaly_command", required=True)
    p = asub.add_parser("fit", help="fit a detector on a file of normal texts")
    p.add_argument("file", type=Path)
    p.add_argument("--detector", type=Path, required=True, help="where to save the detector (.npz)")
    p.add_argument("--method", choices=["knn", "lof", "iforest"], default="knn")
    p.add_argument("--neighbors", type=int, default=10, help="k of knn and lof")
    p.add_argument("--percentile", type=float, default=95.0, help="threshold: this percentile of the normal scores")
    _text_args(p)
    _encoder_args(p)
    p.set_defaults(func=cmd_anomaly_fit)
    p = asub.add_parser("score", help="score the texts of a file and flag those above the threshold")
    p.add_argument("file", type=Path)
    p.add_argument("--detector", type=Path, required=True)
    p.add_argument("--top", type=int, default=20, help="print this many, most anomalous first")
    p.add_argument("--out", type=Path, help="write id, score, flag and text per line to this TSV")
    _text_args(p)
    _encoder_args(p)
    p.set_defaults(func=cmd_anomaly_score)

    # kb
    kb = subparsers.add_parser("kb", help="knowledge-base QA: add documents, ask questions")
    ksub = kb.add_subparsers(dest="kb_command", required=True)
    p = ksub.add_parser("add", help="add files or folders to a knowledge base (a search index folder)")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--kb", type=Path, required=True, help="knowledge-base folder (created if absent)")
    p.add_argument("--sync", action="store_true", help="also delete documents of these paths that are gone")
    p.add_argument("--chunk-tokens", type=int)
    _text_args(p)
    _encoder_args(p)
    p.set_defaults(func=cmd_kb_add)
    p = ksub.add_parser("ask", help="the best passages for a question, and an answer when a chat endpoint is set")
    p.add_argument("question")
    p.add_argument("--kb", type=Path, required=True)
    p.add_argument("-k", type=int, default=5, help="passages (default 5)")
    p.add_argument("--chat-base-url", help="OpenAI-compatible chat endpoint (or $EMBEDDING2_CHAT_BASE_URL)")
    p.add_argument("--chat-model", help="chat model (or $EMBEDDING2_CHAT_MODEL; default glm-4-flash)")
    p.add_argument("--chat-api-key", help="its key (or $EMBEDDING2_CHAT_API_KEY)")
    p.add_argument("--no-generate", action="store_true", help="passages only, even with a chat endpoint configured")
    p.add_argument("--json", action="store_true")
    _encoder_args(p)
    p.set_defaults(func=cmd_kb_ask)


__all__ = ["register"]
