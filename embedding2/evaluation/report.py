"""Results of an evaluation and their presentation: terminal table, Markdown, JSON, comparisons.

Also holds the reference figures a score is read against: the published MTEB scores of the default
model (multilingual-e5-small) and the lexical baselines of the evaldata README.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Published test-set scores (x100) of intfloat/multilingual-e5-small in the MTEB results repository
# (embeddings-benchmark/results, mteb 1.12.75): cosine Spearman for the STS sets, and for Tatoeba
# cmn-eng the accuracy of cmn->eng nearest-neighbour search (MTEB's main score there is F1: 89.85).
PUBLISHED_E5_SMALL: dict[tuple[str, str], float] = {
    ("lcqmc", ""): 72.70,
    ("bq", ""): 43.27,
    ("atec", ""): 35.14,
    ("pawsx-zh", ""): 11.00,
    ("stsb-zh", ""): 77.93,
    ("stsb-en", ""): 83.59,
    ("tatoeba-cmn-eng", "zh->en"): 92.10,
}
PUBLISHED = {"e5-small": PUBLISHED_E5_SMALL}

# Lexical baselines of ../shared/evaldata/README.md (no model): character uni/bigram overlap Spearman
# for the STS sets, BM25 nDCG@10 for monolingual retrieval.
LEXICAL_BASELINES: dict[tuple[str, str], float] = {
    ("stsb-zh", ""): 58.0,
    ("stsb-en", ""): 56.5,
    ("lcqmc", ""): 50.0,
    ("bq", ""): 40.1,
    ("atec", ""): 24.9,
    ("pawsx-zh", ""): 10.4,
    ("cmrc2018-retrieval", ""): 98.1,
    ("xquad-retrieval", "zh->zh"): 96.7,
}


@dataclass
class TaskResult:
    """Scores (x100) of one task on one dataset (and subset: a direction or language pair)."""

    dataset: str
    task: str  # sts, bitext, classification, clustering, retrieval
    subset: str  # "" or e.g. "zh->en"
    split: str
    main_metric: str
    scores: dict[str, float]
    n: int  # pairs, sentence pairs, items or queries evaluated
    seconds: float = 0.0
    limit: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def main_score(self) -> float:
        return self.scores[self.main_metric]

    @property
    def row_key(self) -> tuple[str, str, str]:
        return (self.dataset, self.task, self.subset)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        return cls(**data)


def reference(model_label: str, result: TaskResult) -> float | None:
    """The published figure for this model and row, if any."""
    for name, table in PUBLISHED.items():
        if model_label == name or model_label.startswith(name):
            return table.get((result.dataset, result.subset))
    return None


def baseline(result: TaskResult) -> float | None:
    return LEXICAL_BASELINES.get((result.dataset, result.subset))


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def _others(r: TaskResult) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in r.scores.items() if k != r.main_metric and not k.endswith("_std"))


def result_rows(results: Sequence[TaskResult], model_label: str) -> list[list[str]]:
    rows = []
    for r in results:
        ref = reference(model_label, r)
        delta = "" if ref is None else f"{r.main_score - ref:+.2f}"
        rows.append(
            [
                r.dataset,
                r.task,
                r.subset,
                r.main_metric,
                f"{r.main_score:.2f}",
                _fmt(ref),
                delta,
                _fmt(baseline(r)),
                str(r.n),
                _others(r),
            ]
        )
    return rows


TASK_ORDER = ("sts", "bitext", "retrieval", "classification", "clustering")
HEADER = ["dataset", "task", "subset", "metric", "score", "published", "delta", "lexical", "n", "other metrics"]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A fixed-width table for the terminal (CJK-safe enough: widths count characters)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)] if rows else []
    if not widths:
        return "(no results)"
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in rows:
        out.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in out)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        out.append("| " + " | ".join(str(x).replace("|", "\\|") for x in row) + " |")
    return "\n".join(out)


@dataclass
class RunReport:
    """One run: which backend, on which data, and its results."""

    encoder: dict[str, Any]
    data_root: str
    split: str
    limit: int | None
    results: list[TaskResult]
    started: str = ""
    seconds: float = 0.0
    command: str = ""

    @property
    def label(self) -> str:
        return str(self.encoder.get("label", ""))

    @property
    def reference_name(self) -> str:
        """Whose published figures this run is read against (``--reference``, else the model's name)."""
        return str(self.encoder.get("reference") or self.label)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["results"] = [r.to_dict() for r in self.results]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        data = dict(data)
        data["results"] = [TaskResult.from_dict(r) for r in data.get("results", [])]
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> RunReport:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def terminal(self) -> str:
        return text_table(HEADER, result_rows(self.results, self.reference_name))

    def markdown(self) -> str:
        head = [
            f"# embedding2 eval: {self.label} ({self.encoder.get('backend', '')})",
            "",
            f"- data: `{self.data_root}`, split `{self.split}`" + (f", limit {self.limit}" if self.limit else ""),
            "- prefixes: " + ", ".join(f"{k} `{v}`" for k, v in self.encoder.get("prefixes", {}).items()),
            f"- started {self.started}, {self.seconds:.0f} s",
        ]
        if self.command:
            head.append(f"- command: `{self.command}`")
        return "\n".join([*head, "", markdown_table(HEADER, result_rows(self.results, self.reference_name)), ""])

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        jpath, mpath = out_dir / "results.json", out_dir / "results.md"
        jpath.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        mpath.write_text(self.markdown(), encoding="utf-8")
        return jpath, mpath


def comparison_table(
    runs: Iterable[RunReport], names: Sequence[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """One row per (dataset, task, subset), one column per run, plus published and lexical figures.

    The published column holds the figure of any run whose model has one (the default model's).
    """
    runs = list(runs)
    names = list(names) if names else [f"{r.label} ({r.encoder.get('backend', '')})" for r in runs]
    keys: list[tuple[str, str, str]] = []
    by_run: list[dict[tuple[str, str, str], TaskResult]] = []
    for run in runs:
        table = {r.row_key: r for r in run.results}
        by_run.append(table)
        keys.extend(k for k in table if k not in keys)
    order = {t: i for i, t in enumerate(TASK_ORDER)}
    keys.sort(key=lambda k: order.get(k[1], len(order)))  # stable: datasets keep their order within a task
    header = ["dataset", "task", "subset", "metric", *names, "published (e5-small)", "lexical baseline"]
    rows = []
    for key in keys:
        first = next(t[key] for t in by_run if key in t)
        published = None
        for run, table in zip(runs, by_run, strict=True):
            if key in table and published is None:
                published = reference(run.reference_name, table[key])
        cells = [_fmt(t[key].main_score) if key in t else "" for t in by_run]
        rows.append([*key, first.main_metric, *cells, _fmt(published), _fmt(baseline(first))])
    return header, rows
