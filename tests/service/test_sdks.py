"""The official SDKs, unmodified, against a real server: vectors, usage and error classes.

Vectors are compared with ``np.array_equal`` against the in-process engine with the same settings
(e5-small, same cache, same ONNX model): the engine pads every text to its own length bucket, so a
text's vector does not depend on what it was batched with, and the service sends float32 values that
read back to the same bits (base64: the raw bytes; float JSON: the shortest text of each float32).
"""

from __future__ import annotations

import time

import jwt
import numpy as np
import openai
import pytest
import zai
from zai import ZhipuAiClient
from zai.core import _errors as zai_errors

from embedding2.engine.embedder import Embedder
from tests.service.conftest import Server

try:  # zhipuai 2.x pins PyJWT<2.9, zai-sdk 0.2 needs >=2.9: installed with --no-deps where present
    import zhipuai
    from zhipuai import ZhipuAI
    from zhipuai.core import _errors as zhipu_errors
except ImportError:  # pragma: no cover - depends on the environment
    zhipuai = None  # type: ignore[assignment]

needs_zhipuai = pytest.mark.skipif(zhipuai is None, reason="zhipuai not installed (pip install --no-deps zhipuai)")

ZH = ["美食非常美味，服务员也很友好。", "这部电影既刺激又令人兴奋。"]
EN = ["The food was delicious and the waiter was friendly.", "This movie is thrilling and exciting."]
MIXED = ["我今天用 Python 写了一个 HTTP server，性能不错。", "GPU 推理比 CPU 快很多 (about 10x)."]


def zai_client(server: Server, key: str, **kw: object) -> ZhipuAiClient:
    return ZhipuAiClient(api_key=key, base_url=f"{server.url}/api/paas/v4", **kw)  # type: ignore[arg-type]


def zhipu_client(server: Server, key: str, **kw: object) -> ZhipuAI:  # type: ignore[valid-type]
    return ZhipuAI(api_key=key, base_url=f"{server.url}/api/paas/v4", **kw)  # type: ignore[arg-type]


def openai_client(server: Server, key: str, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", **kw)  # type: ignore[arg-type]


def as_matrix(data: list) -> np.ndarray:  # type: ignore[type-arg]
    assert [d.index for d in data] == list(range(len(data)))
    return np.array([d.embedding for d in data], dtype=np.float32)


@pytest.mark.parametrize("texts", [ZH, EN, MIXED, ZH + EN + MIXED], ids=["zh", "en", "mixed", "all"])
def test_zai_vectors_equal_in_process_engine(server: Server, admin_key: str, e5: Embedder, texts: list[str]) -> None:
    res = zai_client(server, admin_key).embeddings.create(model="embedding-2", input=texts)
    want = e5.embed(texts, model="embedding-2")
    got = as_matrix(res.data)
    assert res.model == "embedding-2" and res.object == "list"
    assert got.shape == (len(texts), 1024)
    assert np.array_equal(got, want.vectors)
    assert res.usage.prompt_tokens == res.usage.total_tokens == want.total_tokens
    assert res.usage.completion_tokens == 0


def test_zai_single_string_and_jwt(server: Server, admin_key: str, e5: Embedder) -> None:
    client = zai_client(server, admin_key, disable_token_cache=False)  # sends an HS256 JWT, exp in ms
    res = client.embeddings.create(model="embedding-2", input=ZH[0])
    assert len(res.data) == 1
    assert np.array_equal(as_matrix(res.data)[0], e5.embed(ZH[0]).vectors[0])


@needs_zhipuai
@pytest.mark.parametrize("jwt_mode", [False, True], ids=["key", "jwt"])
def test_zhipuai_sdk(server: Server, admin_key: str, e5: Embedder, jwt_mode: bool) -> None:
    client = zhipu_client(server, admin_key, disable_token_cache=not jwt_mode)
    res = client.embeddings.create(model="embedding-2", input="你好")
    assert np.array_equal(as_matrix(res.data)[0], e5.embed("你好").vectors[0])
    res = client.embeddings.create(model="embedding-2", input=MIXED)
    assert np.array_equal(as_matrix(res.data), e5.embed(MIXED).vectors)
    assert res.usage.total_tokens == sum(e5.embed(MIXED).token_counts)


def test_openai_sdk_base64_default_and_float(server: Server, admin_key: str, e5: Embedder) -> None:
    client = openai_client(server, admin_key)
    texts = EN + ZH
    want = e5.embed(texts).vectors
    res = client.embeddings.create(model="embedding-2", input=texts)  # the SDK asks for base64 and decodes it
    assert np.array_equal(as_matrix(res.data), want)
    res = client.embeddings.create(model="embedding-2", input=texts, encoding_format="float")
    assert np.array_equal(as_matrix(res.data), want)
    assert res.usage.total_tokens == sum(e5.embed(texts).token_counts)


def test_embedding3_dimensions_and_input_type(server: Server, admin_key: str, e5: Embedder) -> None:
    client = zai_client(server, admin_key)
    for dims in (256, 512, 1024, 2048):
        res = client.embeddings.create(model="embedding-3", input=EN, dimensions=dims)
        assert np.array_equal(as_matrix(res.data), e5.embed(EN, model="embedding-3", dimensions=dims).vectors)
    res = openai_client(server, admin_key).embeddings.create(
        model="embedding-3", input=EN, dimensions=256, extra_body={"input_type": "document"}
    )
    want = e5.embed(EN, model="embedding-3", dimensions=256, input_type="document").vectors
    assert np.array_equal(as_matrix(res.data), want)


def test_vectors_are_unit_length_and_deterministic(server: Server, admin_key: str) -> None:
    client = openai_client(server, admin_key)
    a = as_matrix(client.embeddings.create(model="embedding-2", input=MIXED).data)
    b = as_matrix(client.embeddings.create(model="embedding-2", input=list(reversed(MIXED))).data)[::-1]
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, b)


# ---------------------------------------------------------------------------------------------- errors
def _expired_jwt(key: str) -> str:
    key_id, secret = key.split(".")
    now_ms = int(time.time() * 1000)
    return jwt.encode(
        {"api_key": key_id, "exp": now_ms - 60_000, "timestamp": now_ms - 300_000},
        secret,
        algorithm="HS256",
        headers={"alg": "HS256", "sign_type": "SIGN"},
    )


@pytest.fixture(scope="module")
def spent_key(server: Server) -> str:
    """A key whose account has no tokens left (1113)."""
    key = server.new_key("spent", "V0")
    server.accounts().set_token_quota("spent", 0)
    return key


def _zai_error_cases(server: Server, admin_key: str, spent_key: str) -> list[tuple[str, str, dict[str, object]]]:
    return [
        ("1000", "0123456789abcdef.wrongsecret", {"model": "embedding-2", "input": "a"}),
        ("1002", "not-a-key", {"model": "embedding-2", "input": "a"}),
        ("1003", _expired_jwt(admin_key), {"model": "embedding-2", "input": "a"}),
        ("1113", spent_key, {"model": "embedding-2", "input": "a"}),
        ("1211", admin_key, {"model": "embedding-9", "input": "a"}),
        ("1214", admin_key, {"model": "embedding-2", "input": ""}),
        ("1214", admin_key, {"model": "embedding-2", "input": [1, 2, 3]}),
        ("1214", admin_key, {"model": "embedding-2", "input": "a", "dimensions": 256}),
        ("1261", admin_key, {"model": "embedding-2", "input": "token " * 600}),
    ]


ZAI_CLASS = {"400": zai_errors.APIRequestFailedError, "401": zai_errors.APIAuthenticationError,
             "429": zai_errors.APIReachLimitError}  # fmt: skip
ZHIPU_CLASS = (
    {"400": zhipu_errors.APIRequestFailedError, "401": zhipu_errors.APIAuthenticationError,
     "429": zhipu_errors.APIReachLimitError} if zhipuai is not None else {}
)  # fmt: skip
OPENAI_CLASS = {"400": openai.BadRequestError, "401": openai.AuthenticationError, "429": openai.RateLimitError}
STATUS = {"1000": "401", "1002": "401", "1003": "401", "1113": "429", "1211": "400", "1214": "400", "1261": "400"}


def test_zai_error_classes(server: Server, admin_key: str, spent_key: str) -> None:
    for code, key, body in _zai_error_cases(server, admin_key, spent_key):
        client = zai_client(server, key)
        with pytest.raises(zai.core.APIStatusError) as info:
            client.embeddings.create(**body)  # type: ignore[arg-type]
        assert type(info.value) is ZAI_CLASS[STATUS[code]], code
        assert info.value.response.json()["error"]["code"] == code
        assert info.value.response.headers["x-should-retry"] == "false"


@needs_zhipuai
def test_zhipuai_error_classes(server: Server, admin_key: str, spent_key: str) -> None:
    for code, key, body in _zai_error_cases(server, admin_key, spent_key):
        client = zhipu_client(server, key)
        with pytest.raises(zhipuai.core._errors.APIStatusError) as info:
            client.embeddings.create(**body)  # type: ignore[arg-type]
        assert type(info.value) is ZHIPU_CLASS[STATUS[code]], code
        assert info.value.response.json()["error"]["code"] == code


def test_missing_authorization_is_1001(server: Server) -> None:
    import httpx

    r = httpx.post(f"{server.url}/api/paas/v4/embeddings", json={"model": "embedding-2", "input": "a"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "1001"


def test_openai_error_classes(server: Server, admin_key: str, spent_key: str) -> None:
    for code, key, body in _zai_error_cases(server, admin_key, spent_key):
        client = openai_client(server, key)
        with pytest.raises(openai.APIStatusError) as info:
            client.embeddings.create(**body)  # type: ignore[arg-type]
        assert type(info.value) is OPENAI_CLASS[STATUS[code]], code
        assert info.value.code == code  # the SDK reads error.code from the body
