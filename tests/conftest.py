"""Shared fixtures: one model cache for the whole run, real engines on the real packs, evaldata."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedding2.engine.embedder import Embedder
from embedding2.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EVALDATA = Path(os.environ.get("EMBEDDING2_EVALDATA", ROOT.parent / "shared" / "evaldata"))


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """Converted packs and ONNX exports, kept between runs in .cache/ (ignored by git)."""
    path = Path(os.environ.get("EMBEDDING2_TEST_CACHE", ROOT / ".cache" / "test-models"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def settings(cache_dir: Path) -> Settings:
    return Settings(cache_dir=cache_dir, threads=0)


@pytest.fixture(scope="session")
def e5(settings: Settings) -> Iterator[Embedder]:
    emb = Embedder("e5-small", settings=settings)
    yield emb
    emb.close()


@pytest.fixture(scope="session")
def minilm(settings: Settings) -> Iterator[Embedder]:
    emb = Embedder("minilm", settings=settings)
    yield emb
    emb.close()


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="session")
def evaldata() -> Path:
    if not EVALDATA.is_dir():
        pytest.skip(f"evaldata not found at {EVALDATA}")
    return EVALDATA


@pytest.fixture(scope="session")
def mixed_texts(evaldata: Path) -> list[str]:
    """Chinese and English texts of many lengths from evaldata (deterministic selection)."""
    zh = [r["sentence1"] for r in read_tsv(evaldata / "stsb-zh" / "test.tsv")[:120]]
    en = [r["sentence1"] for r in read_tsv(evaldata / "stsb-en" / "test.tsv")[:120]]
    import json

    docs = [
        json.loads(line)["text"]
        for line in (evaldata / "xquad-retrieval" / "corpus.zh.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    ]
    docs += [
        json.loads(line)["text"]
        for line in (evaldata / "xquad-retrieval" / "corpus.en.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    ]
    return zh + en + docs
