"""bge-m3-like and Qwen3-Embedding-like models, end to end, on tiny random weights built here.

The production models (BAAI/bge-m3: XLM-RoBERTa, 1024-d, CLS pooling; Qwen/Qwen3-Embedding-0.6B:
Qwen3 decoder, 1024-d, last-token pooling, instruction prompt for queries) cannot be downloaded on
these machines, so :mod:`tests.tiny_models` writes folders of the same architectures and file layout
(transformers config + seeded random weights as safetensors, a trained ``tokenizer.json``, the
sentence-transformers files). Each is loaded through the folder path that serves the real models, on
both backends, and checked against vectors computed directly with transformers (fp32, the model's
pooling, its prompt, L2 norm), against sentence-transformers' reading of the same folder, and for
limits, truncation, served dimensions and batch invariance.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedding2.engine.embedder import Embedder
from embedding2.errors import InputError
from embedding2.models.folder import load_spec
from embedding2.models.spec import InputType
from embedding2.settings import Settings
from tests.tiny_models import QWEN3_PROMPTS, build_bge_m3_like, build_qwen3_embedding_like

# building the folders and two ONNX exports takes more than 10 s in all; each test is quick after that
pytestmark = pytest.mark.slow

KINDS = ("bge", "qwen")
BACKENDS = ("onnx", "torch")
COMBOS = [(k, b) for k in KINDS for b in BACKENDS]
POOLING = {"bge": "cls", "qwen": "last"}  # what the folders were built with
LIMIT = {"bge": 64, "qwen": 80}  # per-item token limits the folders were built with

# mixed scripts and lengths; several share a length bucket so that batches really hold many texts
TEXTS = [
    "你好",
    "今天天气很好",
    "机器学习",
    "hello world",
    "上海的夜景",
    "语义搜索",
    "The quick brown fox",
    "今天天气很好，我们去公园散步吧。",
    "How much protein should a female eat per day?",
    "混合 mixed 中文 and English 文本 in one sentence.",
    "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "Semantic search finds documents by meaning rather than by matching keywords, which helps users.",
]
LONG_TEXT = " ".join(["股票市场今天大幅下跌 and investors worried about inflation."] * 12)


def _prefix(kind: str, input_type: InputType | None) -> str:
    """The prompt the model's authors prescribe (no prompt on documents and for symmetric use)."""
    if kind == "qwen" and input_type == "query":
        return QWEN3_PROMPTS["query"]
    return ""


class Reference:
    """Vectors computed directly with transformers: AutoTokenizer + AutoModel fp32, one text at a time."""

    def __init__(self, folder: Path, pooling: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(1)  # as the engines here (threads=1): two cores, shared with other work
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
        self.pooling = pooling

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def vector_of_ids(self, ids: list[int]) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            hidden = self.model(input_ids=torch.tensor([ids])).last_hidden_state[0].double().numpy()
        vec = hidden[0] if self.pooling == "cls" else hidden[len(ids) - 1]
        return vec / np.linalg.norm(vec)

    def vectors(self, texts: list[str], prefix: str = "") -> np.ndarray:
        return np.stack([self.vector_of_ids(self.ids(prefix + t)) for t in texts])


# --------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "bge": build_bge_m3_like(root / "bge-m3-tiny"),
        "qwen": build_qwen3_embedding_like(root / "qwen3-embedding-tiny"),
    }


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-cache")


@pytest.fixture(scope="module")
def engine(tiny_folders: dict[str, Path], tiny_cache: Path) -> Iterator[Callable[[str, str], Embedder]]:
    """``engine(kind, backend)``: one Embedder per model and backend, built on first use."""
    made: dict[tuple[str, str], Embedder] = {}

    def get(kind: str, backend: str) -> Embedder:
        if (kind, backend) not in made:
            settings = Settings(cache_dir=tiny_cache, backend=backend, threads=1)
            made[(kind, backend)] = Embedder(tiny_folders[kind], settings=settings)
        return made[(kind, backend)]

    yield get
    for emb in made.values():
        emb.close()


@pytest.fixture(scope="module")
def reference(tiny_folders: dict[str, Path]) -> Callable[[str], Reference]:
    made: dict[str, Reference] = {}

    def get(kind: str) -> Reference:
        if kind not in made:
            made[kind] = Reference(tiny_folders[kind], POOLING[kind])
        return made[kind]

    return get


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))


def _assert_unit(vectors: np.ndarray) -> None:
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors.astype(np.float64), axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------------------- load_spec
def test_load_spec_bge_m3_like(tiny_folders: dict[str, Path]) -> None:
    spec = load_spec(tiny_folders["bge"])
    assert spec.architecture == "XLMRobertaModel"
    assert spec.model_type == "xlm-roberta"
    assert spec.native_dim == 1024
    assert spec.max_tokens == LIMIT["bge"]  # 66 positions minus XLM-R's padding offset of 2
    assert spec.pooling == "cls"
    assert spec.normalize is True
    assert spec.is_decoder is False
    assert spec.prompts == {}
    assert spec.default_input_type is None  # bge-m3 uses no instruction on either side
    assert spec.prefix(None) == spec.prefix("query") == spec.prefix("document") == ""
    assert spec.matryoshka is False
    assert spec.padding_side == "right"


def test_load_spec_qwen3_embedding_like(tiny_folders: dict[str, Path]) -> None:
    folder = tiny_folders["qwen"]
    spec = load_spec(folder)
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["Qwen3ForCausalLM"]
    assert spec.model_type == "qwen3"
    assert spec.native_dim == 1024
    # sentence_bert_config.json's max_seq_length (80) wins over the 128 positions of config.json
    assert spec.max_tokens == LIMIT["qwen"]
    assert spec.pooling == "last"
    assert spec.normalize is True
    assert spec.is_decoder is True
    assert spec.prompts == {"query": QWEN3_PROMPTS["query"]}  # the empty document prompt means "none"
    # Qwen3-Embedding's authors put the instruction on queries only; documents and symmetric
    # similarity take no instruction, so the default must carry no prefix
    assert spec.default_input_type in (None, "document")
    assert spec.prefix(None) == spec.prefix("document") == ""
    assert spec.prefix("query") == QWEN3_PROMPTS["query"]
    assert spec.matryoshka is True
    assert spec.padding_side == "left"  # recorded; the engine pads right and pools at length - 1


def test_load_spec_honours_default_prompt_name(tiny_folders: dict[str, Path], tmp_path: Path) -> None:
    """sentence-transformers' ``default_prompt_name`` is the authors' default input type."""
    folder = tmp_path / "qwen-default-query"
    folder.mkdir()
    (folder / "1_Pooling").mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "modules.json", "1_Pooling/config.json"):
        (folder / name).write_bytes((tiny_folders["qwen"] / name).read_bytes())
    st = json.loads((tiny_folders["qwen"] / "config_sentence_transformers.json").read_text())
    st["default_prompt_name"] = "query"
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st))
    spec = load_spec(folder)
    assert spec.default_input_type == "query"
    assert spec.prefix(None) == QWEN3_PROMPTS["query"]
    assert spec.prefix("document") == ""
    assert spec.pooling == "last" and spec.max_tokens == 128  # no sentence_bert_config.json: positions


def test_tokenizers_follow_the_real_models(
    tiny_folders: dict[str, Path], reference: Callable[[str], Reference]
) -> None:
    """XLM-R wraps in <s> ... </s>; Qwen3-Embedding's tokenizer appends <|endoftext|> (pooled token)."""
    bge, qwen = reference("bge"), reference("qwen")
    ids = bge.ids("hello world")
    assert ids[0] == 0 and ids[-1] == 2 and 2 not in ids[1:-1]
    ids = qwen.ids("hello world")
    assert ids[-1] == qwen.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert qwen.tokenizer.padding_side == "left"


# --------------------------------------------------------------------------------------- vectors
@pytest.mark.parametrize("input_type", [None, "query", "document"])
@pytest.mark.parametrize(("kind", "backend"), COMBOS)
def test_vectors_match_transformers(
    kind: str,
    backend: str,
    input_type: InputType | None,
    engine: Callable[[str, str], Embedder],
    reference: Callable[[str], Reference],
) -> None:
    emb = engine(kind, backend)
    ref = reference(kind).vectors(TEXTS, prefix=_prefix(kind, input_type))
    batch = emb.embed(TEXTS, model=None, input_type=input_type)
    assert batch.vectors.shape == (len(TEXTS), 1024)
    _assert_unit(batch.vectors)
    assert _cosines(batch.vectors, ref).min() >= 0.9999
    singles = np.concatenate([emb.embed([t], model=None, input_type=input_type).vectors for t in TEXTS[::3]])
    assert _cosines(singles, ref[::3]).min() >= 0.9999
    # token counts include the prompt and the special tokens, as the model sees them
    ref_counts = [len(reference(kind).ids(_prefix(kind, input_type) + t)) for t in TEXTS]
    assert batch.token_counts == ref_counts


def test_query_prompt_changes_qwen_vectors_only(engine: Callable[[str, str], Embedder]) -> None:
    for kind in KINDS:
        emb = engine(kind, "onnx")
        plain = emb.embed(TEXTS[:4], model=None).vectors
        doc = emb.embed(TEXTS[:4], model=None, input_type="document").vectors
        query = emb.embed(TEXTS[:4], model=None, input_type="query").vectors
        assert np.array_equal(plain, doc)
        if kind == "qwen":
            assert _cosines(plain, query).max() < 0.999
        else:
            assert np.array_equal(plain, query)


@pytest.mark.parametrize("kind", KINDS)
def test_sentence_transformers_reads_the_folder_the_same_way(
    kind: str, tiny_folders: dict[str, Path], engine: Callable[[str, str], Embedder]
) -> None:
    st_module = pytest.importorskip("sentence_transformers")
    model = st_module.SentenceTransformer(str(tiny_folders[kind]), device="cpu")
    emb = engine(kind, "onnx")
    for input_type in (None, "query", "document"):
        prompt_name: Any = input_type if kind == "qwen" and input_type == "query" else None
        expected = model.encode(TEXTS, prompt_name=prompt_name, batch_size=4, convert_to_numpy=True)
        got = emb.embed(TEXTS, model=None, input_type=input_type).vectors
        assert _cosines(got, expected).min() >= 0.9999


# --------------------------------------------------------------------------------------- dimensions
@pytest.mark.parametrize(("kind", "backend"), COMBOS)
def test_served_dimensions(kind: str, backend: str, engine: Callable[[str, str], Embedder]) -> None:
    emb = engine(kind, backend)
    texts = TEXTS[:8]
    native = emb.embed(texts, model=None).vectors
    assert native.shape == (len(texts), 1024)
    e2 = emb.embed(texts, model="embedding-2").vectors
    assert e2.shape == (len(texts), 1024)
    assert np.array_equal(e2, native)  # 1024-native: embedding-2 is the model's own vector
    assert emb.embed(texts, model="embedding-3").vectors.shape == (len(texts), 2048)  # the default
    native_cos = native.astype(np.float64) @ native.T.astype(np.float64)
    for dims in (256, 512, 1024, 2048):
        vec = emb.embed(texts, model="embedding-3", dimensions=dims).vectors
        assert vec.shape == (len(texts), dims)
        _assert_unit(vec)
        if dims == 2048:  # an isometry: every cosine between pairs of texts unchanged
            np.testing.assert_allclose(vec.astype(np.float64) @ vec.T.astype(np.float64), native_cos, atol=1e-5)
        if dims == 1024:
            assert np.array_equal(vec, native)
        if dims < 1024 and emb.spec.matryoshka:  # Qwen3-Embedding: truncate and renormalise
            cut = native[:, :dims].astype(np.float64)
            np.testing.assert_allclose(vec, cut / np.linalg.norm(cut, axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(InputError):
        emb.embed(texts, model="embedding-3", dimensions=300)


# --------------------------------------------------------------------------------------- limits
@pytest.mark.parametrize(("kind", "backend"), COMBOS)
def test_token_limit_and_truncation(
    kind: str, backend: str, engine: Callable[[str, str], Embedder], reference: Callable[[str], Reference]
) -> None:
    emb = engine(kind, backend)
    ref = reference(kind)
    limit = LIMIT[kind]
    for input_type in (None, "query"):
        prefix = _prefix(kind, input_type)
        full_ids = ref.ids(prefix + LONG_TEXT)
        assert len(full_ids) > limit
        with pytest.raises(InputError) as info:
            emb.embed([TEXTS[0], LONG_TEXT], model="embedding-2", input_type=input_type)
        assert info.value.code == "1261"
        res = emb.embed([TEXTS[0], LONG_TEXT], model="embedding-2", input_type=input_type, truncate=True)
        assert res.token_counts[1] == limit
        # the truncated text: its first tokens (prompt included), then the closing special token
        cut = [*full_ids[: limit - 1], full_ids[-1]]
        assert _cosines(res.vectors[1:], ref.vector_of_ids(cut)[None, :])[0] >= 0.9999
        assert _cosines(res.vectors[:1], ref.vectors(TEXTS[:1], prefix))[0] >= 0.9999

    # the boundary: a text of exactly `limit` tokens passes, one token more does not
    words = LONG_TEXT.split(" ")
    counts = [emb.count_tokens(" ".join(words[:n]))[0] for n in range(1, len(words) + 1)]
    fits = max(n for n, c in enumerate(counts, start=1) if c <= limit)
    text = " ".join(words[:fits])
    ok = emb.embed([text], model="embedding-2")
    assert ok.token_counts == [counts[fits - 1]]
    with pytest.raises(InputError) as info:
        emb.embed([" ".join(words[: fits + 1])], model="embedding-2")
    assert info.value.code == "1261"


# --------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize(("kind", "backend"), COMBOS)
def test_alone_equals_in_batch_bitwise(kind: str, backend: str, engine: Callable[[str, str], Embedder]) -> None:
    emb = engine(kind, backend)
    alone = np.concatenate([emb.embed([t], model="embedding-3", dimensions=2048).vectors for t in TEXTS])
    before = emb.scheduler.counters.batches
    together = emb.embed(TEXTS, model="embedding-3", dimensions=2048).vectors
    batches = list(emb.scheduler.counters.last_batches)[-(emb.scheduler.counters.batches - before) :]
    assert max(b.size for b in batches) >= 4  # texts really shared forward passes
    reversed_order = emb.embed(TEXTS[::-1], model="embedding-3", dimensions=2048).vectors[::-1]
    assert np.array_equal(alone, together), f"{backend}: alone != in a batch"
    assert np.array_equal(together, reversed_order), f"{backend}: batch order changed vectors"
