"""The ``embedding2 eval`` subcommand: evaluate a backend on evaluation data, or combine past runs.

embedding2 eval                                   # e5-small in-process, every task of ../shared/evaldata
embedding2 eval --model minilm --tasks sts --limit 200
embedding2 eval --base-url http://127.0.0.1:8000/v1 --model embedding-2 --reference e5-small
embedding2 eval --data my-data/ --tasks my-pairs  # a folder in one of the evaldata layouts
embedding2 eval --combine runs/a/results.json runs/b/results.json --markdown table.md
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

DATA_HELP = """\
Data layouts (one folder per dataset; UTF-8 TSV with a header row, no quoting):
  pair similarity   <split>.tsv: sentence1, sentence2, score|label      -> sts (Spearman x100)
  bitext mining     <split>.tsv: [id,] <lang1>, <lang2>                -> bitext (NN accuracy, both directions)
  labelled texts    <split>.tsv: text, label [, ...]                    -> classification, clustering
  retrieval (BEIR)  corpus[.<lang>].jsonl, queries[.<lang>].jsonl, qrels.<split>.tsv -> retrieval (nDCG@10)
--tasks takes dataset names (globs), task types (sts, bitext, classification, clustering, retrieval)
or dataset:type, comma-separated."""


def _default_data() -> Path | None:
    env = os.environ.get("EMBEDDING2_EVALDATA")
    if env:
        return Path(env)
    for candidate in (Path("../shared/evaldata"), Path("shared/evaldata")):
        if candidate.is_dir():
            return candidate
    return None


def register(subparsers: Any) -> None:
    from embedding2.cli import _engine_args

    p = subparsers.add_parser(
        "eval",
        help="measure embedding quality (STS, retrieval, clustering, classification, bitext)",
        description="Evaluate the in-process engine or any Embedding-2/OpenAI-compatible endpoint.",
        epilog=DATA_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", type=Path, help="data root or one dataset folder (default ../shared/evaldata)")
    p.add_argument("--tasks", help="what to run (default all); see below")
    p.add_argument("--limit", type=int, help="first N pairs/items/queries of each dataset (quick runs)")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--list", action="store_true", help="list the datasets and their task types, then exit")
    http = p.add_argument_group("HTTP backend (instead of the in-process engine)")
    http.add_argument("--base-url", help="e.g. http://127.0.0.1:8000/v1 or .../api/paas/v4")
    http.add_argument("--api-key", default=os.environ.get("EMBEDDING2_API_KEY"), help="(env EMBEDDING2_API_KEY)")
    http.add_argument("--dimensions", type=int, help="request this many dimensions (embedding-3)")
    http.add_argument("--no-input-type", action="store_true", help="never send the input_type field")
    http.add_argument("--query-prefix", default="", help="prepend to queries and symmetric texts client-side")
    http.add_argument("--document-prefix", default="", help="prepend to retrieval documents client-side")
    http.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    http.add_argument(
        "--tokenizer",
        metavar="MODEL",
        help="the served model (pack or folder): cut long texts locally instead of probing the server",
    )
    http.add_argument(
        "--label", help="name of what serves the URL (report name and cache key: use one per backing model)"
    )
    out = p.add_argument_group("output and caching")
    out.add_argument("--output", type=Path, help="folder for results.json and results.md (default eval-results/NAME)")
    out.add_argument("--eval-cache", type=Path, help="vector and result cache (default <cache-dir>/eval)")
    out.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    out.add_argument("--refresh", action="store_true", help="recompute everything, replacing the cache")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--reference", help="read scores against this model's published figures (e.g. e5-small)")
    out.add_argument("--combine", nargs="+", type=Path, metavar="RESULTS_JSON", help="combine past runs into one table")
    out.add_argument("--names", nargs="+", help="column names for --combine")
    out.add_argument("--markdown", type=Path, help="with --combine: write the table to this file")
    _engine_args(p)
    p.set_defaults(func=cmd_eval)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "run"


def cmd_combine(args: argparse.Namespace) -> int:
    from embedding2.evaluation.report import RunReport, comparison_table, markdown_table, text_table

    runs = [RunReport.load(p) for p in args.combine]
    header, rows = comparison_table(runs, args.names)
    print(text_table(header, rows))
    if args.markdown:
        args.markdown.write_text(markdown_table(header, rows) + "\n", encoding="utf-8")
        print(f"\nwrote {args.markdown}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from embedding2.cli import settings_from_args
    from embedding2.evaluation.data import DataError, discover, select
    from embedding2.evaluation.encoders import EngineEncoder, HttpEncoder, TextEncoder, TokenFitter
    from embedding2.evaluation.runner import evaluate

    if args.combine:
        return cmd_combine(args)
    data_root = args.data or _default_data()
    if data_root is None:
        print("embedding2 eval: no data folder; pass --data (or set EMBEDDING2_EVALDATA)", file=sys.stderr)
        return 2
    try:
        refs = discover(data_root)
        selection = select(refs, args.tasks)
    except DataError as exc:
        print(f"embedding2 eval: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for ref in refs:
            print(f"{ref.name:24s} {ref.kind:10s} {','.join(ref.task_types):26s} splits {','.join(ref.splits)}")
        return 0
    if args.limit is not None and args.limit < 2:
        print("embedding2 eval: --limit must be at least 2", file=sys.stderr)
        return 2

    settings = settings_from_args(args)  # over HTTP only its cache_dir is used
    encoder: TextEncoder
    if args.base_url:
        encoder = HttpEncoder(
            args.base_url,
            args.model or "embedding-2",
            api_key=args.api_key,
            dimensions=args.dimensions,
            send_input_type=not args.no_input_type,
            query_prefix=args.query_prefix,
            document_prefix=args.document_prefix,
            concurrency=args.concurrency,
            label=args.label,
            fitter=TokenFitter.for_model(args.tokenizer, Path(settings.cache_dir)) if args.tokenizer else None,
        )
    else:
        encoder = EngineEncoder.from_settings(settings)
    cache_dir = None if args.no_cache else (args.eval_cache or Path(settings.cache_dir) / "eval")
    out_dir = args.output or Path("eval-results") / _slug(f"{encoder.label}-{encoder.backend}")
    reference = args.reference or (encoder.label if encoder.backend == "engine" else None)
    command = "embedding2 " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["eval"] else ""

    def show(rows: list[Any]) -> None:
        for r in rows:
            sub = f" {r.subset}" if r.subset else ""
            print(
                f"{r.dataset}:{r.task}{sub}  {r.main_metric} {r.main_score:.2f}  ({r.n}, {r.seconds:.0f} s)",
                file=sys.stderr,
            )

    try:
        report = evaluate(
            encoder,
            selection,
            split=args.split,
            limit=args.limit,
            cache_dir=cache_dir,
            refresh=args.refresh,
            show_progress=not args.no_progress,
            data_root=str(Path(data_root).resolve()),
            reference=reference,
            command=command,
            on_result=show,
        )
    finally:
        encoder.close()
    print(report.terminal())
    jpath, mpath = report.write(out_dir)
    print(f"\nwrote {jpath} and {mpath}", file=sys.stderr)
    return 0
