"""`embedding2 eval` end to end on --limit'ed evaldata: every task type, output files, resuming from cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedding2.cli import main

pytestmark = pytest.mark.slow

TASKS = "stsb-en,tatoeba-cmn-eng,tnews-fewclue,xquad-retrieval"


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("eval")
    return base / "cache", base / "out"


def _run(evaldata: Path, cache_dir: Path, eval_cache: Path, out: Path) -> int:
    return main(
        [
            "eval",
            "--data", str(evaldata),
            "--tasks", TASKS,
            "--limit", "12",
            "--cache-dir", str(cache_dir),
            "--eval-cache", str(eval_cache),
            "--output", str(out),
            "--no-progress",
        ]
    )  # fmt: skip


def test_eval_runs_every_task_type_and_writes_reports(
    evaldata: Path, cache_dir: Path, run_dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    eval_cache, out = run_dirs
    assert _run(evaldata, cache_dir, eval_cache, out) == 0
    table = capsys.readouterr().out
    assert "stsb-en" in table and "published" in table
    report = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert report["encoder"]["prefixes"] == {"symmetric": "query: ", "query": "query: ", "document": "passage: "}
    rows = {(r["dataset"], r["task"], r["subset"]): r for r in report["results"]}
    assert set(rows) == {
        ("stsb-en", "sts", ""),
        ("tatoeba-cmn-eng", "bitext", "zh->en"),
        ("tatoeba-cmn-eng", "bitext", "en->zh"),
        ("tnews-fewclue", "classification", ""),
        ("tnews-fewclue", "clustering", ""),
        ("xquad-retrieval", "retrieval", "en->en"),
        ("xquad-retrieval", "retrieval", "zh->zh"),
        ("xquad-retrieval", "retrieval", "en->zh"),
        ("xquad-retrieval", "retrieval", "zh->en"),
    }
    for r in rows.values():
        assert r["n"] == 12 and r["limit"] == 12
        assert all(-100.0 <= v <= 100.0 for v in r["scores"].values())
    # the model works: far above chance on every task
    assert rows[("stsb-en", "sts", "")]["scores"]["spearman"] > 50
    assert rows[("tatoeba-cmn-eng", "bitext", "zh->en")]["scores"]["accuracy"] > 70
    assert rows[("xquad-retrieval", "retrieval", "zh->en")]["scores"]["ndcg@10"] > 50
    assert rows[("tnews-fewclue", "classification", "")]["details"]["protocol"].endswith("cross-validation")
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "| stsb-en | sts |" in md and "`passage: `" in md


def test_a_second_run_is_read_from_the_cache(
    evaldata: Path, cache_dir: Path, run_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    eval_cache, out = run_dirs
    first = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"]
    assert list((eval_cache / "vectors").glob("*.sqlite"))
    assert _run(evaldata, cache_dir, eval_cache, tmp_path / "again") == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text(encoding="utf-8"))["results"]
    assert again == first  # identical, including the recorded timings: nothing was recomputed


def test_combine_makes_one_table(run_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = run_dirs
    md = tmp_path / "table.md"
    assert main(["eval", "--combine", str(out / "results.json"), str(out / "results.json"),
                 "--names", "A", "B", "--markdown", str(md)]) == 0  # fmt: skip
    text = md.read_text(encoding="utf-8")
    assert text.startswith("| dataset | task | subset | metric | A | B |")
    assert text.count("| stsb-en | sts |") == 1


def test_bad_task_selection_is_a_clear_error(evaldata: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--data", str(evaldata), "--tasks", "no-such-set"]) == 2
    assert "matches nothing" in capsys.readouterr().err
