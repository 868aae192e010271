"""Models, health, readiness, metrics, headers, the error envelope on every path, curl, and --no-auth."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from embedding2.engine.embedder import Embedder
from tests.service.conftest import Server, start_server

BODY = {"model": "embedding-2", "input": ["你好，世界", "hello world"]}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_models_lists_served_ids_with_backing_model(server: Server, e5: Embedder) -> None:
    for path in ("/v1/models", "/api/paas/v4/models"):
        r = httpx.get(server.url + path)
        assert r.status_code == 200
        models = {m["id"]: m for m in r.json()["data"]}
        assert set(models) == {"embedding-2", "embedding-3"}
        e2 = models["embedding-2"]
        assert e2["dimensions"] == [1024] and e2["max_item_tokens"] == 512 and e2["max_request_tokens"] == 8192
        assert e2["backing_model"] == "e5-small" and e2["native_dimensions"] == e5.spec.native_dim == 384
        assert models["embedding-3"]["dimensions"] == [256, 512, 1024, 2048]
        assert models["embedding-3"]["max_items"] == 64
        # embedding-3 allows 3,072 tokens per item; a 512-token backing model accepts 512, and says so
        assert models["embedding-3"]["contract_max_item_tokens"] == 3072
        assert models["embedding-3"]["max_item_tokens"] == e5.spec.max_tokens == 512


def test_health_and_ready(server: Server) -> None:
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    r = httpx.get(server.url + "/ready")
    assert r.status_code == 200
    assert r.json()["status"] == "ready" and r.json()["model"] == "e5-small"


def test_response_shape_ids_and_timing_headers(server: Server, admin_key: str) -> None:
    r = httpx.post(server.url + "/api/paas/v4/embeddings", json=BODY, headers=auth(admin_key))
    assert r.status_code == 200
    body = r.json()
    assert list(body)[:4] == ["model", "object", "data", "usage"]
    assert body["object"] == "list" and body["model"] == "embedding-2"
    assert [(d["index"], d["object"]) for d in body["data"]] == [(0, "embedding"), (1, "embedding")]
    assert isinstance(body["data"][0]["embedding"][0], float)
    assert body["usage"]["completion_tokens"] == 0
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    assert isinstance(body["created"], int) and body["id"] == body["request_id"] == r.headers["x-request-id"]
    for stage in ("auth", "tokenize", "queue", "inference", "encode", "ledger", "total"):
        assert float(r.headers[f"x-{stage}-ms"]) >= 0
        assert f"{stage};dur=" in r.headers["server-timing"]
    # the forward passes that computed this request were attributed to it (see metrics.BatchAttribution)
    assert 0 < float(r.headers["x-inference-ms"]) <= float(r.headers["x-total-ms"])
    # the client's request_id is echoed in the body and the header; the response id stays unique
    r2 = httpx.post(server.url + "/v1/embeddings", json={**BODY, "request_id": "my-req-1"}, headers=auth(admin_key))
    assert r2.json()["request_id"] == r2.headers["x-request-id"] == "my-req-1"
    assert r2.json()["id"] != "my-req-1"
    # a request id that is not header-safe is echoed percent-encoded in the header, as-is in the body
    r3 = httpx.post(server.url + "/v1/embeddings", json={**BODY, "request_id": "请求\r\nx: y"}, headers=auth(admin_key))
    assert r3.status_code == 200 and r3.json()["request_id"] == "请求\r\nx: y"
    assert "\n" not in r3.headers["x-request-id"] and "x" not in r3.headers.keys() - {"x-request-id"}


def test_four_authorization_forms(server: Server, admin_key: str) -> None:
    import time

    import jwt

    key_id, secret = admin_key.split(".")
    now = int(time.time() * 1000)
    token = jwt.encode({"api_key": key_id, "exp": now + 60_000, "timestamp": now}, secret, algorithm="HS256",
                       headers={"alg": "HS256", "sign_type": "SIGN"})  # fmt: skip
    for value in (f"Bearer {admin_key}", admin_key, f"Bearer {token}", token):
        r = httpx.post(server.url + "/v1/embeddings", json=BODY, headers={"Authorization": value})
        assert r.status_code == 200, (value[:10], r.text)


def test_error_envelope_everywhere(server: Server, admin_key: str) -> None:
    r = httpx.get(server.url + "/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "404"
    r = httpx.get(server.url + "/v1/embeddings")
    assert r.status_code == 405 and r.json()["error"]["code"] == "405"
    r = httpx.post(server.url + "/v1/embeddings", content=b"{", headers=auth(admin_key))
    assert r.status_code == 400 and r.json()["error"] == {"code": "1210", "message": r.json()["error"]["message"]}
    assert r.headers["x-should-retry"] == "false"


def test_metrics(server: Server, admin_key: str) -> None:
    httpx.post(server.url + "/v1/embeddings", json=BODY, headers=auth(admin_key))
    httpx.post(server.url + "/v1/embeddings", json={"model": "nope", "input": "a"}, headers=auth(admin_key))
    text = httpx.get(server.url + "/metrics").text
    assert 'embedding2_requests_total{code="ok",endpoint="embeddings",status="200"}' in text
    assert 'embedding2_requests_total{code="1211",endpoint="embeddings",status="400"}' in text
    for stage in ("auth", "tokenize", "queue", "inference", "encode", "ledger", "total"):
        assert f'embedding2_request_stage_seconds_count{{stage="{stage}"}}' in text
    for name in ("embedding2_engine_queue_texts", "embedding2_batch_size_count", "embedding2_batch_tokens_sum",
                 "embedding2_batch_forward_seconds_count", "embedding2_tokens_served_total"):  # fmt: skip
        assert name in text
    served = [
        line for line in text.splitlines() if line.startswith('embedding2_tokens_served_total{model="embedding-2"}')
    ]
    assert served and float(served[0].split()[-1]) > 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_example(server: Server, admin_key: str, e5: Embedder) -> None:
    out = subprocess.run(
        ["curl", "-sS", "-H", f"Authorization: Bearer {admin_key}", "-d",
         '{"model":"embedding-2","input":"美食非常美味，服务员也很友好。"}',
         f"{server.url}/api/paas/v4/embeddings"],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    import json

    body = json.loads(out.stdout)
    got = np.array(body["data"][0]["embedding"], dtype=np.float32)
    assert np.array_equal(got, e5.embed("美食非常美味，服务员也很友好。").vectors[0])


# ------------------------------------------------------------------------------------------ --no-auth
@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("noauth") / "data", cache_dir, "--no-auth")
    yield srv
    srv.stop()


def test_no_auth_serves_as_local_account_and_ledgers(open_server: Server) -> None:
    assert "--no-auth is ON" in open_server.log()
    r = httpx.post(open_server.url + "/v1/embeddings", json={**BODY, "request_id": "noauth-1"})
    assert r.status_code == 200
    usage = open_server.accounts().usage("local")
    assert usage and usage[0].requests >= 1 and usage[0].tokens == r.json()["usage"]["total_tokens"]
