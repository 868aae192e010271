"""Evaluation datasets: discovery of a data folder and loading of its four layouts.

A data root (``../shared/evaldata``, or a user's own folder) holds one folder per dataset. The layout
of each folder decides its task types; files are UTF-8, tab-separated with a header row, no quoting:

- pair similarity (``sts``): ``<split>.tsv`` with ``sentence1``, ``sentence2`` and ``score`` (graded) or
  ``label`` (0/1) columns;
- bitext mining (``bitext``): ``<split>.tsv`` with exactly two text columns named by their languages
  (plus an optional ``id``), row i of one translating row i of the other;
- labelled texts (``classification`` and ``clustering``): ``<split>.tsv`` with ``text`` and ``label``;
  a ``train.tsv`` (else ``validation.tsv``) next to the evaluated split trains the classifier, otherwise
  the classifier is cross-validated on the evaluated split;
- retrieval (``retrieval``, BEIR layout): ``corpus.jsonl`` / ``queries.jsonl`` (``_id``, ``text``; the
  corpus ``text`` is embedded) and ``qrels.<split>.tsv`` or ``qrels/<split>.tsv``
  (``query-id``, ``corpus-id``, ``score``). Per-language files ``corpus.<lang>.jsonl`` and
  ``queries.<lang>.jsonl`` sharing ids give one run per (query language, document language) pair,
  cross-lingual pairs included.

Rows with an empty text are skipped (and counted); nothing else is dropped or changed. A ``limit`` draws
that many rows with a fixed seed (files are often sorted by label), so quick runs are repeatable.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Kind = Literal["pair", "bitext", "labelled", "retrieval"]
TASK_TYPES: dict[str, tuple[str, ...]] = {
    "pair": ("sts",),
    "bitext": ("bitext",),
    "labelled": ("classification", "clustering"),
    "retrieval": ("retrieval",),
}
ALL_TASK_TYPES = ("sts", "bitext", "classification", "clustering", "retrieval")


class DataError(ValueError):
    """A folder or file that does not follow one of the layouts."""


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a tab-separated file (no quoting, as the evaldata README prescribes)."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path} is empty") from None
        rows = [row for row in reader if row]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise DataError(f"{path}: row {i + 2} has {len(row)} fields, the header has {len(header)}")
    return header, rows


def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return next(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), [])


def read_jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass(frozen=True)
class DatasetRef:
    """One dataset folder, classified by layout."""

    name: str
    path: Path
    kind: Kind
    splits: tuple[str, ...]  # evaluable splits (tsv layouts) or qrels splits (retrieval)
    languages: tuple[str, ...] = ()  # bitext: the two text columns; retrieval: per-language suffixes

    @property
    def task_types(self) -> tuple[str, ...]:
        return TASK_TYPES[self.kind]

    def fingerprint(self) -> str:
        """Changes when any file of the folder changes (size or modification time)."""
        h = hashlib.sha256()
        for p in sorted(self.path.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(self.path)}:{st.st_size}:{st.st_mtime_ns};".encode())
        return h.hexdigest()[:16]


def classify_folder(path: Path) -> DatasetRef | None:
    """The layout of ``path``, or None when it holds no evaluation data."""
    qrels = sorted(path.glob("qrels.*.tsv")) + sorted((path / "qrels").glob("*.tsv"))
    if qrels and list(path.glob("corpus*.jsonl")) and list(path.glob("queries*.jsonl")):
        splits = tuple(sorted({q.name.split(".")[1] if q.parent == path else q.stem for q in qrels}))
        langs = sorted(
            m.group(1) for p in path.glob("corpus.*.jsonl") if (m := re.fullmatch(r"corpus\.(.+)\.jsonl", p.name))
        )
        qlangs = {
            m.group(1) for p in path.glob("queries.*.jsonl") if (m := re.fullmatch(r"queries\.(.+)\.jsonl", p.name))
        }
        if (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file():
            langs_t: tuple[str, ...] = ()
        elif langs and qlangs:
            langs_t = tuple(sorted(set(langs) | qlangs))
        else:
            raise DataError(f"{path}: retrieval folder without matching corpus/queries files")
        return DatasetRef(path.name, path, "retrieval", splits, langs_t)
    tsvs = sorted(p for p in path.glob("*.tsv") if not p.name.startswith("qrels"))
    if not tsvs:
        return None
    splits = tuple(p.stem for p in tsvs)
    header = _header(tsvs[0])
    cols = set(header)
    if {"sentence1", "sentence2"} <= cols and cols & {"score", "label"}:
        return DatasetRef(path.name, path, "pair", splits)
    if {"text", "label"} <= cols:
        return DatasetRef(path.name, path, "labelled", splits)
    text_cols = [c for c in header if c != "id"]
    if len(text_cols) == 2:
        return DatasetRef(path.name, path, "bitext", splits, tuple(text_cols))
    raise DataError(f"{tsvs[0]}: columns {header} match no layout (see `embedding2 eval --help`)")


def discover(root: Path) -> list[DatasetRef]:
    """Every dataset folder under ``root`` (or ``root`` itself when it is one dataset folder)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    own = classify_folder(root)
    if own is not None:
        return [own]
    refs = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        ref = classify_folder(sub)
        if ref is not None:
            refs.append(ref)
    if not refs:
        raise DataError(f"no dataset folders under {root}")
    return refs


def select(refs: list[DatasetRef], spec: str | None) -> list[tuple[DatasetRef, str]]:
    """(dataset, task type) pairs chosen by ``spec``: comma-separated dataset names (globs allowed),
    task types (``sts``, ``retrieval``...) or ``dataset:type``; None or ``all`` selects everything."""
    pairs = [(ref, t) for ref in refs for t in ref.task_types]
    if not spec or spec.strip() == "all":
        return pairs
    chosen: list[tuple[DatasetRef, str]] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        name, _, ttype = token.partition(":")
        if not ttype and name in ALL_TASK_TYPES:
            matched = [p for p in pairs if p[1] == name]
        else:
            matched = [p for p in pairs if fnmatch.fnmatchcase(p[0].name, name) and (not ttype or p[1] == ttype)]
        if not matched:
            known = ", ".join(sorted({r.name for r in refs}))
            raise DataError(f"--tasks {token!r} matches nothing; datasets: {known}; types: {', '.join(ALL_TASK_TYPES)}")
        chosen.extend(p for p in matched if p not in chosen)
    return chosen


# ---------------------------------------------------------------------------------------------- loading
@dataclass
class PairData:
    sentences1: list[str]
    sentences2: list[str]
    gold: list[float]
    skipped: int = 0


@dataclass
class BitextData:
    languages: tuple[str, str]
    texts1: list[str]
    texts2: list[str]
    skipped: int = 0


@dataclass
class LabelledData:
    texts: list[str]
    labels: list[str]
    skipped: int = 0


@dataclass
class RetrievalData:
    query_ids: list[str]
    queries: list[str]
    doc_ids: list[str]
    docs: list[str]
    relevant: list[dict[str, float]]  # per query: corpus id -> relevance
    skipped: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def _split_file(ref: DatasetRef, split: str) -> Path:
    path = ref.path / f"{split}.tsv"
    if not path.is_file():
        raise DataError(f"{ref.name} has no split {split!r} (it has {', '.join(ref.splits)})")
    return path


def sample(rows: list[list[str]], limit: int | None) -> list[list[str]]:
    """``limit`` rows drawn with a fixed seed, in file order (files are often sorted by label or score)."""
    if limit is None or limit >= len(rows):
        return rows
    keep = sorted(random.Random(0).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def _nonempty(*texts: str) -> bool:
    return all(t.strip() for t in texts)


def load_pairs(ref: DatasetRef, split: str = "test", limit: int | None = None) -> PairData:
    header, rows = read_tsv(_split_file(ref, split))
    i1, i2 = header.index("sentence1"), header.index("sentence2")
    ig = header.index("score") if "score" in header else header.index("label")
    data = PairData([], [], [])
    for row in sample(rows, limit):
        if not _nonempty(row[i1], row[i2]):
            data.skipped += 1
            continue
        data.sentences1.append(row[i1])
        data.sentences2.append(row[i2])
        data.gold.append(float(row[ig]))
    return data


def load_bitext(ref: DatasetRef, split: str = "test", limit: int | None = None) -> BitextData:
    header, rows = read_tsv(_split_file(ref, split))
    l1, l2 = ref.languages
    i1, i2 = header.index(l1), header.index(l2)
    data = BitextData((l1, l2), [], [])
    for row in sample(rows, limit):
        if not _nonempty(row[i1], row[i2]):
            data.skipped += 1
            continue
        data.texts1.append(row[i1])
        data.texts2.append(row[i2])
    return data


def load_labelled(ref: DatasetRef, split: str = "test", limit: int | None = None) -> LabelledData:
    header, rows = read_tsv(_split_file(ref, split))
    it, il = header.index("text"), header.index("label")
    data = LabelledData([], [])
    for row in sample(rows, limit):
        if not _nonempty(row[it]):
            data.skipped += 1
            continue
        data.texts.append(row[it])
        data.labels.append(row[il])
    return data


def train_split(ref: DatasetRef, split: str) -> str | None:
    """The split that trains the classifier for ``split``: ``train``, else ``validation``, else None."""
    for candidate in ("train", "validation", "dev"):
        if candidate != split and candidate in ref.splits:
            return candidate
    return None


def retrieval_runs(ref: DatasetRef) -> list[tuple[str, str]]:
    """(query language, document language) of each run; ``("", "")`` for a single-language folder."""
    if not ref.languages:
        return [("", "")]
    langs = [lang for lang in ref.languages if (ref.path / f"corpus.{lang}.jsonl").is_file()]
    qlangs = [lang for lang in ref.languages if (ref.path / f"queries.{lang}.jsonl").is_file()]
    # monolingual runs first, then the cross-lingual ones
    runs = [(q, d) for q in qlangs for d in langs if q == d]
    runs += [(q, d) for q in qlangs for d in langs if q != d]
    return runs


def _qrels_path(ref: DatasetRef, split: str) -> Path:
    for path in (ref.path / f"qrels.{split}.tsv", ref.path / "qrels" / f"{split}.tsv"):
        if path.is_file():
            return path
    raise DataError(f"{ref.name} has no qrels for split {split!r}")


def load_retrieval(
    ref: DatasetRef, query_lang: str = "", doc_lang: str = "", split: str = "test", limit: int | None = None
) -> RetrievalData:
    """Queries with judgements, and the corpus.

    With ``limit``, ``limit`` judged queries are drawn (fixed seed) and the corpus is cut to their relevant
    documents plus the first ``limit`` other documents (a quick, easier run: not comparable to a full one).
    """
    qfile = ref.path / (f"queries.{query_lang}.jsonl" if query_lang else "queries.jsonl")
    cfile = ref.path / (f"corpus.{doc_lang}.jsonl" if doc_lang else "corpus.jsonl")
    header, rows = read_tsv(_qrels_path(ref, split))
    iq, ic, isc = header.index("query-id"), header.index("corpus-id"), header.index("score")
    qrels: dict[str, dict[str, float]] = {}
    for row in rows:
        qrels.setdefault(row[iq], {})[row[ic]] = float(row[isc])
    data = RetrievalData([], [], [], [], [])
    queries = [q for q in read_jsonl(qfile) if any(r > 0 for r in qrels.get(str(q["_id"]), {}).values())]
    if limit is not None and limit < len(queries):
        # the same ids whatever the language of the file, so cross-lingual runs stay comparable
        chosen = set(random.Random(0).sample(sorted(str(q["_id"]) for q in queries), limit))
        queries = [q for q in queries if str(q["_id"]) in chosen]
    for q in queries:
        qid, text = str(q["_id"]), str(q.get("text", ""))
        if not _nonempty(text):
            data.skipped += 1
            continue
        data.query_ids.append(qid)
        data.queries.append(text)
        data.relevant.append(qrels[qid])
    wanted = {doc for rels in data.relevant for doc in rels} if limit is not None else None
    others = 0
    for d in read_jsonl(cfile):
        did, text = str(d["_id"]), str(d.get("text", ""))
        if wanted is not None and did not in wanted:
            if others >= (limit or 0):
                continue
            others += 1
        if not _nonempty(text):
            data.skipped += 1
            continue
        data.doc_ids.append(did)
        data.docs.append(text)
    return data
