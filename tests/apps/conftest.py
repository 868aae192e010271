"""Fixtures of the scenario tests: the real e5-small engine behind the apps' Encoder, and small
deterministic slices of ../shared/evaldata (embedded once per session)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from embedding2.apps.encoders import EngineEncoder
from embedding2.engine.embedder import Embedder
from tests.conftest import read_tsv


@pytest.fixture(scope="session")
def encoder(e5: Embedder) -> EngineEncoder:
    """The in-process encoder on the session's e5-small engine (native 384-d vectors)."""
    return EngineEncoder(e5)


@dataclass
class Labelled:
    texts: list[str]
    labels: list[str]
    vectors: np.ndarray


def _slice(path: Path, classes: list[str], per_class: int, offset: int = 0) -> tuple[list[str], list[str]]:
    rows = read_tsv(path)
    texts, labels = [], []
    for c in classes:
        picked = [r["text"] for r in rows if r["label"] == c][offset : offset + per_class]
        texts += picked
        labels += [c] * len(picked)
    return texts, labels


CLASSES = ["sports", "finance", "game", "education", "entertainment", "realty"]


@pytest.fixture(scope="session")
def titles(evaldata: Path, encoder: EngineEncoder) -> Labelled:
    """40 thucnews test titles of each of 6 categories (240), with their vectors."""
    texts, labels = _slice(evaldata / "thucnews-titles" / "test.tsv", CLASSES, 40)
    return Labelled(texts, labels, encoder.encode(texts))


@pytest.fixture(scope="session")
def titles_validation(evaldata: Path, encoder: EngineEncoder) -> Labelled:
    """60 thucnews validation titles of each of the same 6 categories (360), with their vectors."""
    texts, labels = _slice(evaldata / "thucnews-titles" / "validation.tsv", CLASSES, 60)
    return Labelled(texts, labels, encoder.encode(texts))


@dataclass
class Retrieval:
    doc_ids: list[str]
    docs: list[str]
    queries: list[str]
    relevant: list[dict[str, float]]


def load_retrieval_slice(folder: Path, corpus: str, queries: str, n_docs: int, n_queries: int) -> Retrieval:
    """The first ``n_docs`` documents, and up to ``n_queries`` queries whose relevant documents are among them."""
    docs = [json.loads(line) for line in (folder / corpus).read_text(encoding="utf-8").splitlines()[:n_docs]]
    ids = {d["_id"] for d in docs}
    qrels: dict[str, dict[str, float]] = {}
    for r in read_tsv(folder / "qrels.test.tsv"):
        qrels.setdefault(r["query-id"], {})[r["corpus-id"]] = float(r["score"])
    qs, rel = [], []
    for line in (folder / queries).read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        judged = qrels.get(q["_id"], {})
        if judged and set(judged) <= ids:
            qs.append(q["text"])
            rel.append(judged)
        if len(qs) >= n_queries:
            break
    return Retrieval([d["_id"] for d in docs], [d["text"] for d in docs], qs, rel)


@pytest.fixture(scope="session")
def xquad(evaldata: Path) -> Retrieval:
    """xquad zh questions over the first 40 English passages (cross-lingual)."""
    return load_retrieval_slice(evaldata / "xquad-retrieval", "corpus.en.jsonl", "queries.zh.jsonl", 40, 60)


@pytest.fixture(scope="session")
def cmrc(evaldata: Path) -> Retrieval:
    """cmrc2018 questions over its first 50 paragraphs (many over 256 tokens: several chunks each)."""
    return load_retrieval_slice(evaldata / "cmrc2018-retrieval", "corpus.jsonl", "queries.jsonl", 50, 60)
