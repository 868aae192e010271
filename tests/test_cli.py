"""The `embedding2` command line: embed, models list/info/convert."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from embedding2.engine.embedder import Embedder


def run(*args: str, cache_dir: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embedding2.cli", *args, "--cache-dir", str(cache_dir)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=600,
    )


def test_embed_prints_the_engine_vectors_as_json(cache_dir: Path, e5: Embedder) -> None:
    proc = run("embed", "你好", "hello world", cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    vecs = np.array([d["embedding"] for d in out["data"]], dtype=np.float32)
    assert vecs.shape == (2, 1024)
    assert np.array_equal(vecs, e5.embed(["你好", "hello world"]).vectors)
    assert out["usage"]["total_tokens"] == sum(e5.count_tokens(["你好", "hello world"]))


def test_embed_reads_stdin_and_reports_bad_input(cache_dir: Path) -> None:
    proc = run("embed", "--native", cache_dir=cache_dir, stdin="first line\nsecond line\n")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["data"]) == 2
    bad = run("embed", "x" * 10, "--dimensions", "77", cache_dir=cache_dir)
    assert bad.returncode == 2 and "1214" in bad.stderr and "Traceback" not in bad.stderr


def test_models_list_info_convert(cache_dir: Path) -> None:
    listing = run("models", "list", cache_dir=cache_dir)
    assert listing.returncode == 0 and "e5-small" in listing.stdout and "embedding-2" in listing.stdout
    info = json.loads(run("models", "info", "e5-small", cache_dir=cache_dir).stdout)
    assert info["native_dimensions"] == 384 and info["pooling"] == "mean" and info["max_tokens"] == 512
    conv = run("models", "convert", "minilm", cache_dir=cache_dir)
    assert conv.returncode == 0 and conv.stdout.strip().splitlines()[-1].endswith("model.onnx")
    unknown = run("models", "info", "no-such-model", cache_dir=cache_dir)
    assert unknown.returncode == 2 and "1211" in unknown.stderr
