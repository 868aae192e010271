"""A whole evaluation run: the selected tasks in order, a progress bar, and resumable caching.

Two caches live under the run's cache folder (default ``<cache_dir>/eval``):

- ``vectors/<encoder>.sqlite``: every vector embedded so far (see :class:`.encoders.VectorStore`), so an
  interrupted task resumes at the chunk where it stopped;
- ``results/<encoder>/<dataset>.<task>.<split>.<limit>.<fingerprint>.json``: finished tasks, which a
  later run with the same encoder, data (fingerprint of the files), split and limit reads back instead
  of computing again. ``refresh=True`` ignores both.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from embedding2.evaluation.data import DatasetRef
from embedding2.evaluation.encoders import Kind, TextEncoder, VectorStore, embed_texts, store_path
from embedding2.evaluation.report import RunReport, TaskResult
from embedding2.evaluation.tasks import run_task

# bump when a metric or protocol changes, so cached task results are not reused across the change
HARNESS_VERSION = 3


def _result_path(
    cache_dir: Path, encoder: TextEncoder, ref: DatasetRef, task: str, split: str, limit: int | None
) -> Path:
    stem = store_path(cache_dir, encoder).stem
    name = f"{ref.name}.{task}.{split}.{limit or 'all'}.{ref.fingerprint()}.v{HARNESS_VERSION}.json"
    return cache_dir / "results" / stem / name


def make_embed(
    encoder: TextEncoder, store: VectorStore | None, desc: str, show_progress: bool
) -> Callable[[Sequence[tuple[Sequence[str], Kind]]], list[np.ndarray]]:
    """An embedding function for one task: groups of the same kind are deduplicated together."""

    def embed(groups: Sequence[tuple[Sequence[str], Kind]]) -> list[np.ndarray]:
        from tqdm.auto import tqdm

        by_kind: dict[Kind, list[str]] = {}
        for texts, kind in groups:
            by_kind.setdefault(kind, []).extend(texts)
        total = sum(len(set(texts)) for texts in by_kind.values())
        vectors: dict[Kind, np.ndarray] = {}
        with tqdm(total=total, desc=desc, unit="text", disable=not show_progress, leave=False) as bar:
            for kind, texts in by_kind.items():
                vectors[kind] = embed_texts(encoder, texts, kind, store, progress=bar.update)
        out = []
        offsets: dict[Kind, int] = dict.fromkeys(by_kind, 0)
        for texts, kind in groups:
            start = offsets[kind]
            out.append(vectors[kind][start : start + len(texts)])
            offsets[kind] = start + len(texts)
        return out

    return embed


def evaluate(
    encoder: TextEncoder,
    selection: Sequence[tuple[DatasetRef, str]],
    *,
    split: str = "test",
    limit: int | None = None,
    cache_dir: Path | None = None,
    refresh: bool = False,
    show_progress: bool = True,
    data_root: str = "",
    reference: str | None = None,
    command: str = "",
    on_result: Callable[[list[TaskResult]], None] | None = None,
) -> RunReport:
    """Run every (dataset, task) of ``selection`` with ``encoder``; finished tasks are cached."""
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    store = None
    if cache_dir is not None:
        spath = store_path(cache_dir, encoder)
        if refresh:  # start this encoder's vector cache afresh
            for suffix in ("", "-wal", "-shm"):
                Path(f"{spath}{suffix}").unlink(missing_ok=True)
        store = VectorStore(spath)
    info = encoder.info()
    if reference:
        info["reference"] = reference
    report = RunReport(info, data_root, split, limit, [], started, 0.0, command)
    try:
        for ref, task in selection:
            path = _result_path(cache_dir, encoder, ref, task, split, limit) if cache_dir is not None else None
            rows: list[TaskResult] | None = None
            if path is not None and path.is_file() and not refresh:
                rows = [TaskResult.from_dict(r) for r in json.loads(path.read_text(encoding="utf-8"))]
            if rows is None:
                embed = make_embed(encoder, store, f"{ref.name}:{task}", show_progress)
                rows = run_task(ref, task, embed, split, limit)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps([r.to_dict() for r in rows], ensure_ascii=False), encoding="utf-8")
                    tmp.replace(path)
            report.results.extend(rows)
            report.seconds = time.perf_counter() - t0
            if on_result is not None:
                on_result(rows)
    finally:
        if store is not None:
            store.close()
    report.seconds = time.perf_counter() - t0
    return report
