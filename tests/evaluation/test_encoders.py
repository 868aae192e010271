"""From texts to vectors: prefixes, cutting long texts, deduplication and the resumable vector cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from embedding2.engine.embedder import Embedder
from embedding2.evaluation.encoders import (
    EncoderError,
    EngineEncoder,
    HttpEncoder,
    Kind,
    TextEncoder,
    VectorStore,
    embed_texts,
    longest_fitting_prefix,
)


class HashEncoder(TextEncoder):
    """A deterministic stand-in backend (the code under test is the path around it), counting calls."""

    backend = "test"
    key = "hash"
    label = "hash"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        self.seen.extend(texts)
        rows = [np.frombuffer(hashlib.sha256(f"{kind}:{t}".encode()).digest(), dtype=np.uint8) for t in texts]
        return np.stack(rows).astype(np.float32) - 128.0

    def prefix(self, kind: Kind) -> str:
        return ""


def test_longest_fitting_prefix() -> None:
    assert longest_fitting_prefix("abcdefghij", lambda s: len(s) <= 7) == 7
    assert longest_fitting_prefix("ab", lambda s: len(s) <= 1) == 1
    with pytest.raises(EncoderError):
        longest_fitting_prefix("abc", lambda s: False)


def test_embed_texts_dedupes_keeps_order_and_resumes_from_the_store(tmp_path: Path) -> None:
    enc = HashEncoder()
    store = VectorStore(tmp_path / "v.sqlite")
    texts = ["b", "a", "b", "c", "a"]
    seen_progress: list[int] = []
    v = embed_texts(enc, texts, "symmetric", store, chunk_size=2, progress=seen_progress.append)
    assert sorted(enc.seen) == ["a", "b", "c"]  # each distinct text once
    assert sum(seen_progress) == 3
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(v[0], v[2])
    assert not np.allclose(v[0], v[1])
    store.close()
    # a new process: everything comes from disk, new texts only are embedded
    enc2 = HashEncoder()
    store2 = VectorStore(tmp_path / "v.sqlite")
    v2 = embed_texts(enc2, [*texts, "d"], "symmetric", store2)
    assert enc2.seen == ["d"]
    np.testing.assert_array_equal(v2[:5], v)
    # the kind is part of the key: the same text as a query is embedded anew
    embed_texts(enc2, ["a"], "query", store2)
    assert enc2.seen == ["d", "a"]
    store2.close()


def test_http_requests_respect_item_and_token_budgets() -> None:
    enc = HttpEncoder("http://127.0.0.1:9", max_items=3, max_request_tokens=200)
    try:
        ranges = enc._requests(["x" * 10] * 7 + ["y" * 150, "z"])
        assert ranges == [(0, 3), (3, 6), (6, 7), (7, 8), (8, 9)]
        # a text over the whole budget still goes, alone
        assert enc._requests(["w" * 500]) == [(0, 1)]
    finally:
        enc.close()


def test_engine_prefixes(e5: Embedder, minilm: Embedder) -> None:
    enc = EngineEncoder(e5)
    assert [enc.prefix(k) for k in ("symmetric", "query", "document")] == ["query: ", "query: ", "passage: "]
    texts = ["今天天气很好", "The weather is nice today"]
    sym, query, doc = (enc.encode(texts, k) for k in ("symmetric", "query", "document"))
    np.testing.assert_allclose(sym, query, atol=1e-6)
    assert not np.allclose(sym, doc, atol=1e-3)
    mini = EngineEncoder(minilm)
    assert {mini.prefix(k) for k in ("symmetric", "query", "document")} == {""}


def test_engine_cuts_long_texts_to_the_longest_prefix_that_fits(e5: Embedder, evaldata: Path) -> None:
    enc = EngineEncoder(e5)
    docs = [json.loads(line)["text"] for line in (evaldata / "cmrc2018-retrieval" / "corpus.jsonl").open()]
    long_doc = next(d for d in docs if e5.count_tokens([d], input_type="document")[0] > 600)
    (cut,) = enc.fit([long_doc], "document")
    assert long_doc.startswith(cut) and len(cut) < len(long_doc)
    assert e5.count_tokens([cut], input_type="document")[0] <= 512
    assert e5.count_tokens([long_doc[: len(cut) + 1]], input_type="document")[0] > 512
    assert enc.truncated == 1
    vec = enc.encode([long_doc], "document")
    assert vec.shape == (1, 384)
