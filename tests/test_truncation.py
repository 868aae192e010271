"""Truncation cuts the encoding of the whole text: the same ids as the tokenizer's own truncation.

``TextTokenizer`` truncates by slicing the untruncated encoding (text tokens cut from the end, the
closing special tokens kept) instead of holding a second, truncating tokenizer in memory. Checked here
against ``tokenizers``' own truncation, on the real packs' tokenizers (XLM-R with ``</s>``, BERT with
``[SEP]``) and on the tiny Qwen3-like one (``<|endoftext|>`` appended), with and without prompts, for
evaldata texts in Chinese and English at several limits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from embedding2.engine.embedder import Embedder
from embedding2.engine.tokenization import TextTokenizer
from embedding2.models.spec import ModelSpec
from tests.tiny_models import qwen3_tokenizer, xlmr_tokenizer

LIMITS = (8, 16, 64, 128, 512)


def _reference(path: Path, limit: int) -> Tokenizer:
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(limit)
    return tok


def _check(tokenizer: TextTokenizer, texts: list[str], input_types: tuple[str | None, ...]) -> int:
    path = Path(tokenizer.spec.path) / "tokenizer.json"
    compared = 0
    for limit in sorted({min(limit, tokenizer.spec.max_tokens) for limit in LIMITS}):  # minilm: 256 at most
        ref = _reference(path, limit)
        for input_type in input_types:
            prefix = tokenizer.spec.prefix(input_type)  # type: ignore[arg-type]
            ours = tokenizer.tokenize(texts, input_type=input_type, truncate=True, max_tokens=limit)  # type: ignore[arg-type]
            expected = ref.encode_batch([prefix + t[: limit * 64] for t in texts], add_special_tokens=True)
            for got, want in zip(ours, expected, strict=True):
                assert got.ids.tolist() == want.ids
                compared += got.truncated
    return compared


@pytest.mark.parametrize("pack", ["e5", "minilm"])
def test_packs_truncate_like_the_tokenizer(pack: str, request: pytest.FixtureRequest, mixed_texts: list[str]) -> None:
    emb: Embedder = request.getfixturevalue(pack)
    tokenizer = TextTokenizer(emb.spec)
    assert _check(tokenizer, mixed_texts, (None, "query", "document")) > 500  # most texts were cut


@pytest.mark.parametrize("kind", ["xlmr", "qwen3"])
def test_tiny_tokenizers_truncate_like_the_tokenizer(kind: str, tmp_path: Path, mixed_texts: list[str]) -> None:
    tok = xlmr_tokenizer() if kind == "xlmr" else qwen3_tokenizer()
    tok.save(str(tmp_path / "tokenizer.json"))
    spec = ModelSpec(
        name=f"tiny-{kind}",
        path=tmp_path,
        architecture="Qwen3Model" if kind == "qwen3" else "XLMRobertaModel",
        model_type="qwen3" if kind == "qwen3" else "xlm-roberta",
        native_dim=8,
        max_tokens=512,
        pooling="last" if kind == "qwen3" else "cls",
        prompts={"query": "Instruct: find the answer\nQuery: "} if kind == "qwen3" else {},
    )
    assert _check(TextTokenizer(spec), mixed_texts, (None, "query")) > 500
