"""The SDK's official-SDK surface and its typed errors, against a real server (and the real official SDKs).

``client.embeddings.create`` must answer what zai-sdk and openai answer for the same request (same
vectors, same usage), read the official SDKs' environment variables, and raise each contract error as
its typed exception with the contract's code and the HTTP status.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest

from embedding2.client import (
    DEFAULT_BASE_URL,
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ClientError,
    NotFoundError,
    QuotaExceededError,
    TokenLimitError,
    UnknownModelError,
)
from embedding2.engine.embedder import Embedder
from embedding2.errors import Embedding2Error
from tests.client.conftest import Server

TEXTS = ["美食非常美味，服务员也很友好。", "这部电影既刺激又令人兴奋。", "The food was delicious."]


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return server.new_key("sdk", "V0")


def test_create_matches_the_official_sdks(server: Server, key: str, e5: Embedder) -> None:
    from openai import OpenAI
    from zai import ZhipuAiClient

    with Client(api_key=key, base_url=server.base_url) as client:
        ours = client.embeddings.create(model="embedding-2", input=TEXTS)
        one = client.embeddings.create(model="embedding-2", input=TEXTS[0], encoding_format="base64")
        small = client.embeddings.create(model="embedding-3", input=TEXTS, dimensions=256)
    zai = ZhipuAiClient(api_key=key, base_url=server.base_url).embeddings.create(model="embedding-2", input=TEXTS)
    oai = OpenAI(api_key=key, base_url=f"{server.url}/v1").embeddings.create(model="embedding-2", input=TEXTS)

    assert ours.model == "embedding-2" and ours.object == "list"
    assert [d.index for d in ours.data] == [0, 1, 2]
    assert ours.usage.total_tokens == zai.usage.total_tokens == oai.usage.total_tokens == sum(e5.count_tokens(TEXTS))
    assert ours.usage.prompt_tokens == ours.usage.total_tokens and ours.usage.completion_tokens == 0
    for mine, theirs, openai_item in zip(ours.data, zai.data, oai.data, strict=True):
        assert len(mine.embedding) == 1024
        assert mine.embedding == theirs.embedding
        assert np.array_equal(mine.vector(), np.asarray(openai_item.embedding, dtype=np.float32))
    assert np.array_equal(ours.to_numpy(), e5.embed(TEXTS).vectors)
    assert isinstance(one.data[0].embedding, str)  # base64 asked for, base64 given (as openai does)
    assert np.array_equal(one.data[0].vector(), ours.data[0].vector())
    assert small.to_numpy().shape == (3, 256)


def test_environment_variables_as_the_official_sdks(
    server: Server, key: str, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ZAI_API_KEY", "ZAI_BASE_URL", "ZHIPUAI_API_KEY", "ZHIPUAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert Client().base_url == DEFAULT_BASE_URL == "https://open.bigmodel.cn/api/paas/v4"
    assert Client().api_key is None
    monkeypatch.setenv("ZHIPUAI_API_KEY", key)
    monkeypatch.setenv("ZHIPUAI_BASE_URL", server.base_url + "/")
    with Client() as client:
        assert client.base_url == server.base_url
        assert client.embeddings.create(model="embedding-2", input="你好").usage.total_tokens > 0
    monkeypatch.setenv("ZAI_API_KEY", "zai-wins.secret")
    monkeypatch.setenv("ZAI_BASE_URL", "http://127.0.0.1:9/api/paas/v4")
    assert Client().api_key == "zai-wins.secret" and Client().base_url == "http://127.0.0.1:9/api/paas/v4"
    # the hosted service's tokenizer is not published: embed_many plans with the stated estimate there
    assert Client(api_key="x", base_url=DEFAULT_BASE_URL).tokenizer.name == "estimate"
    assert not Client(api_key="x", base_url=DEFAULT_BASE_URL).tokenizer.exact
    # an embedding2 server names its backing model in GET /models: exact counts with that tokenizer
    local = Client(api_key="x", base_url=server.base_url, cache_dir=cache_dir).tokenizer
    assert local.name == "e5-small" and local.exact
    # a service that does not say (here: a wrong base path, /models answers 404): the estimate, with a warning
    with pytest.warns(RuntimeWarning, match="estimated token counts"):
        unknown = Client(api_key="x", base_url=server.url, cache_dir=cache_dir).tokenizer
    assert unknown.name == "estimate"


def _raises(cls: type[ClientError], code: str, status: int | None, fn: object) -> ClientError:
    with pytest.raises(cls) as err:
        fn()  # type: ignore[operator]
    exc = err.value
    assert exc.code == code and exc.status == status, (exc, exc.code, exc.status)
    assert isinstance(exc, Embedding2Error)
    return exc


def test_typed_errors_carry_the_contract_code(server: Server, key: str, cache_dir: Path) -> None:
    good = Client(api_key=key, base_url=server.base_url, cache_dir=cache_dir, max_retries=0)
    create = good.embeddings.create
    exc = _raises(UnknownModelError, "1211", 400, lambda: create(model="embedding-9", input="x"))
    assert isinstance(exc, BadRequestError) and exc.request_id  # the server's x-request-id
    _raises(BadRequestError, "1214", 400, lambda: create(model="embedding-2", input=["a", ""]))
    _raises(BadRequestError, "1214", 400, lambda: create(model="embedding-2", input="a", dimensions=256))
    _raises(BadRequestError, "1213", 400, lambda: good.embeddings.create(model="embedding-2", input=None))  # type: ignore[arg-type]
    _raises(TokenLimitError, "1261", 400, lambda: create(model="embedding-2", input="长" * 600))
    # embed_many finds the same mistakes before sending anything: the same classes, status None
    _raises(TokenLimitError, "1261", None, lambda: good.embed_many(["short", "长" * 600]))
    _raises(BadRequestError, "1214", None, lambda: good.embed_many(["short", " "]))

    bad_key = Client(api_key="0123abcd.not-the-secret", base_url=server.base_url)
    _raises(AuthenticationError, "1000", 401, lambda: bad_key.embeddings.create(model="embedding-2", input="x"))
    no_key = Client(base_url=server.base_url)
    no_key.api_key = None
    _raises(AuthenticationError, "1001", 401, lambda: no_key.embeddings.create(model="embedding-2", input="x"))
    wrong_path = Client(api_key=key, base_url=server.url, max_retries=0)  # forgot /api/paas/v4
    _raises(NotFoundError, "404", 404, lambda: wrong_path.embeddings.create(model="embedding-2", input="x"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    nobody = Client(api_key=key, base_url=f"http://127.0.0.1:{closed_port}/api/paas/v4", max_retries=1)
    _raises(APIConnectionError, "connection", None, lambda: nobody.embeddings.create(model="embedding-2", input="x"))

    # out of quota: 429/1113, raised at once (not retried: the ledger and counters show one attempt)
    quota_key = server.new_key("sdk-broke", "V0")
    server.accounts_cli("accounts", "set-quota", "sdk-broke", "0")
    broke = Client(api_key=quota_key, base_url=server.base_url, max_retries=5)
    before = server.metric("embedding2_requests_total", code="1113")
    import time

    deadline = time.monotonic() + 15  # the server re-reads account state every few seconds
    while True:
        try:
            broke.embeddings.create(model="embedding-2", input="x")
        except QuotaExceededError as exc:
            assert exc.code == "1113" and exc.status == 429
            break
        assert time.monotonic() < deadline, "the quota was never applied"
        time.sleep(0.5)
    assert server.metric("embedding2_requests_total", code="1113") == before + 1


def test_async_create_and_errors(server: Server, key: str) -> None:
    async def run() -> None:
        async with AsyncClient(api_key=key, base_url=server.base_url) as client:
            r = await client.embeddings.create(model="embedding-2", input=TEXTS)
            assert len(r.data) == 3 and r.usage.total_tokens > 0
            with pytest.raises(UnknownModelError) as err:
                await client.embeddings.create(model="nope", input="x")
            assert err.value.code == "1211" and err.value.status == 400

    asyncio.run(run())
