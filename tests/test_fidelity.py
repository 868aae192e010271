"""Fidelity: engine vectors against a reference computed with transformers in fp32."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from embedding2.engine.embedder import Embedder
from embedding2.settings import Settings


def reference_vectors(folder: Path, texts: list[str], prefix: str) -> np.ndarray:
    """Mean pooling over the attention mask + L2 norm, the model card's recipe, in fp32."""
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for text in texts:
            enc = tok([prefix + text], return_tensors="pt", truncation=True, max_length=512)
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"][..., None].float()
            v = (hidden * mask).sum(1) / mask.sum(1)
            out.append(torch.nn.functional.normalize(v, dim=-1)[0].numpy())
    return np.stack(out)


@pytest.fixture(scope="module")
def texts(mixed_texts: list[str]) -> list[str]:
    return mixed_texts[::6][:48]


@pytest.fixture(scope="module")
def e5_reference(e5: Embedder, texts: list[str]) -> np.ndarray:
    return reference_vectors(e5.spec.path, texts, "query: ")


def test_hf_tokenizer_agrees_with_ours(e5: Embedder, texts: list[str]) -> None:
    tok = AutoTokenizer.from_pretrained(e5.spec.path)
    assert [len(tok("query: " + t)["input_ids"]) for t in texts] == e5.count_tokens(texts)


def test_onnx_fp32_matches_transformers(e5: Embedder, texts: list[str], e5_reference: np.ndarray) -> None:
    ours = e5.embed(texts, model=None).vectors
    cos = np.einsum("ij,ij->i", ours, e5_reference)
    assert cos.min() >= 0.9999, cos.min()


def test_minilm_onnx_matches_transformers(minilm: Embedder) -> None:
    texts = ["A man is playing a guitar.", "Semantic search finds documents by meaning.", "The cat sat on the mat."]
    ref = reference_vectors(minilm.spec.path, texts, "")
    cos = np.einsum("ij,ij->i", minilm.embed(texts, model=None).vectors, ref)
    assert cos.min() >= 0.9999


@pytest.fixture(scope="module")
def e5_int8(settings: Settings) -> Iterator[Embedder]:
    emb = Embedder("e5-small", settings=settings.model_copy(update={"quantize": True}))
    yield emb
    emb.close()


def test_int8_passes_its_fidelity_check_and_matches_transformers(
    e5_int8: Embedder, texts: list[str], e5_reference: np.ndarray
) -> None:
    backend = e5_int8.backend
    assert getattr(backend, "quantized", False), "int8 model was rejected by its fidelity check"
    verdict = Path(backend.model_path).parent / "int8.json"  # type: ignore[attr-defined]
    assert verdict.is_file()
    cos = np.einsum("ij,ij->i", e5_int8.embed(texts, model=None).vectors, e5_reference)
    assert cos.min() >= 0.99, cos.min()


def test_torch_backend_cpu_matches_transformers(settings: Settings, texts: list[str], e5_reference: np.ndarray) -> None:
    with Embedder("e5-small", settings=settings.model_copy(update={"backend": "torch"})) as emb:
        cos = np.einsum("ij,ij->i", emb.embed(texts, model=None).vectors, e5_reference)
    assert cos.min() >= 0.9999, cos.min()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_backend_gpu(settings: Settings, texts: list[str], e5_reference: np.ndarray, dtype: str) -> None:
    upd = {"backend": "torch", "device": "cuda", "torch_dtype": dtype}
    with Embedder("e5-small", settings=settings.model_copy(update=upd)) as emb:
        cos = np.einsum("ij,ij->i", emb.embed(texts, model=None).vectors, e5_reference)
    assert cos.min() >= 0.999, cos.min()
