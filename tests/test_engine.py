"""The Embedder on the real default model: limits, dimensions, async use and determinism."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from embedding2.engine.adapter import isometry
from embedding2.engine.embedder import Embedder
from embedding2.errors import InputError


def test_vectors_are_float32_l2_normalised_with_exact_counts(e5: Embedder) -> None:
    res = e5.embed(["你好，世界", "hello world"])
    assert res.vectors.dtype == np.float32 and res.vectors.shape == (2, 1024)
    np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1.0, atol=1e-6)
    # exact counts: prefix "query: " and <s> </s> included, from the tokenizer itself
    enc = e5.tokenizer._full.encode_batch(["query: 你好，世界", "query: hello world"])
    assert res.token_counts == [len(e.ids) for e in enc]
    assert res.total_tokens == sum(res.token_counts)


def test_single_string_input(e5: Embedder) -> None:
    assert np.array_equal(e5.embed("hello").vectors, e5.embed(["hello"]).vectors)


def test_embedding2_is_an_isometry_of_the_native_vector(e5: Embedder) -> None:
    texts = ["美食非常美味，服务员也很友好。", "这部电影既刺激又令人兴奋。", "The food was great."]
    native = e5.embed(texts, model=None).vectors
    served = e5.embed(texts, model="embedding-2").vectors
    assert native.shape[1] == 384 and served.shape[1] == 1024
    np.testing.assert_allclose(served @ served.T, native @ native.T, atol=2e-6)
    q = isometry(384, 1024)
    np.testing.assert_allclose(q @ q.T, np.eye(384), atol=1e-6)


@pytest.mark.parametrize("dims", [256, 512, 1024, 2048])
def test_embedding3_dimensions(e5: Embedder, dims: int) -> None:
    res = e5.embed(["你好", "hello"], model="embedding-3", dimensions=dims)
    assert res.vectors.shape == (2, dims)
    np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1.0, atol=1e-6)


def test_embedding3_defaults_to_2048(e5: Embedder) -> None:
    assert e5.embed("hi", model="embedding-3").vectors.shape == (1, 2048)


@pytest.mark.parametrize(
    ("texts", "kwargs", "code"),
    [
        ([], {}, "1214"),
        ([""], {}, "1214"),
        (["ok", "   "], {}, "1214"),
        (["ok", 3], {}, "1214"),
        (["x"], {"dimensions": 512}, "1214"),  # embedding-2 is 1024 only
        (["x"], {"model": "embedding-3", "dimensions": 100}, "1214"),
        (["x"], {"model": "gpt-4"}, "1211"),
        (["x"], {"input_type": "passage"}, "1214"),
        (["x"] * 65, {"model": "embedding-3"}, "1214"),
    ],
)
def test_bad_input_is_an_error_with_the_contract_code(e5: Embedder, texts: list, kwargs: dict, code: str) -> None:
    with pytest.raises(InputError) as info:
        e5.embed(texts, **kwargs)
    assert info.value.code == code
    assert info.value.message


def test_item_over_512_tokens_is_an_error_unless_truncation_is_asked(e5: Embedder) -> None:
    long_text = "北京是中国的首都。" * 200
    with pytest.raises(InputError) as info:
        e5.embed(["short", long_text])
    assert info.value.code == "1261" and "input[1]" in info.value.message
    res = e5.embed([long_text], truncate=True)
    assert res.token_counts == [512]
    # truncation keeps the head of the text: the same vector as the head cut by hand at 512 tokens
    ids = e5.tokenizer._full.encode("query: " + long_text).ids
    head = e5.tokenizer._full.decode(ids[1:511])
    assert e5.count_tokens("query: " + head, input_type="document")  # sanity
    # a text of exactly the limit is accepted
    cut = e5.embed([long_text], truncate=True, model=None).vectors
    assert cut.shape == (1, 384)


def test_request_over_8k_tokens_is_an_error(e5: Embedder) -> None:
    item = "深度学习模型把文本映射为向量。" * 20  # ~200 tokens
    n = e5.count_tokens(item)[0]
    texts = [item] * (8192 // n + 1)
    with pytest.raises(InputError) as info:
        e5.embed(texts)
    assert info.value.code == "1261" and "8192" in info.value.message
    assert e5.embed(texts[: 8192 // n]).vectors.shape[0] == 8192 // n


# ----------------------------------------------------------------------------- determinism


def test_determinism_alone_batch_shuffled_concurrent(e5: Embedder, mixed_texts: list[str]) -> None:
    rng = random.Random(7)
    batch = rng.sample(mixed_texts, 64)  # 64 mixed-length Chinese and English texts
    lengths = e5.count_tokens(batch)
    assert min(lengths) < 20 and max(lengths) > 150
    alone = np.stack([e5.embed([t]).vectors[0] for t in batch])
    together = e5.embed(batch).vectors
    assert np.array_equal(alone, together)

    order = list(range(len(batch)))
    rng.shuffle(order)
    shuffled = e5.embed([batch[i] for i in order]).vectors
    assert np.array_equal(shuffled, together[order])

    # 8 concurrent callers, each with its own slice and order, batched together by the scheduler
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def caller(k: int) -> None:
        try:
            idx = order[k::8]
            results[k] = e5.embed([batch[i] for i in idx]).vectors
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(8):
        assert np.array_equal(results[k], together[order[k::8]])


async def test_async_callers_get_the_same_vectors(e5: Embedder, mixed_texts: list[str]) -> None:
    texts = mixed_texts[:40]
    ref = e5.embed(texts).vectors
    outs = await asyncio.gather(*(e5.aembed(texts[i::8]) for i in range(8)))
    for i, out in enumerate(outs):
        assert np.array_equal(out.vectors, ref[i::8])


_RESTART_SCRIPT = """
import sys, numpy as np
from embedding2.engine.embedder import Embedder
from embedding2.settings import Settings
texts = [line for line in sys.stdin.read().split("\\n\\x1e\\n")]
with Embedder("e5-small", settings=Settings(cache_dir=sys.argv[1])) as e:
    np.save(sys.argv[2], e.embed(texts).vectors)
"""


def test_determinism_after_a_process_restart(
    e5: Embedder, mixed_texts: list[str], cache_dir: Path, tmp_path: Path
) -> None:
    texts = mixed_texts[::9][:24]
    out = tmp_path / "v.npy"
    subprocess.run(
        [sys.executable, "-c", _RESTART_SCRIPT, str(cache_dir), str(out)],
        input="\n\x1e\n".join(texts),
        text=True,
        check=True,
    )
    assert np.array_equal(np.load(out), e5.embed(texts).vectors)


def test_many_texts_in_one_call_are_chunked_not_refused(settings) -> None:  # type: ignore[no-untyped-def]
    with Embedder("e5-small", settings=settings.model_copy(update={"max_queue_tokens": 2048})) as emb:
        texts = [f"第{i}条消息：今天天气很好。" for i in range(600)]
        res = emb.embed(texts, model=None)
        assert res.vectors.shape == (600, 384)
        assert np.array_equal(res.vectors[123], emb.embed([texts[123]], model=None).vectors[0])
