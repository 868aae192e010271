"""Hostile and broken input: whatever a client sends, the answer is a 4xx with the contract's code, never a
5xx, and the server stays healthy. Includes a hypothesis fuzz of the JSON body."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.service.conftest import Server

PATH = "/api/paas/v4/embeddings"


@pytest.fixture(scope="module")
def client(server: Server, admin_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=60) as c:
        yield c


def post_raw(client: httpx.Client, content: bytes, **headers: str) -> httpx.Response:
    return client.post(PATH, content=content, headers=headers)


BATTERY: list[tuple[bytes, str]] = [
    (b"", "1210"),
    (b"null", "1210"),
    (b"{}", "1213"),
    (b"{'model': 'embedding-2'}", "1210"),
    (b"\x00\x01\x02", "1210"),
    (b"\xef\xbb\xbf{}", "1210"),  # UTF-8 BOM
    (b'{"model": "embedding-2", "input": "\xff\xfe"}', "1210"),
    (b'{"model": "embedding-2", "input": "a\\ud83d"}', "1210"),
    (b'{"model": "embedding-2", "input": "a", "dimensions": 1e400}', "1210"),
    (b'{"model": "embedding-2", "input": "a", "dimensions": 123456789012345678901234567890}', "1210"),
    (b'{"model": "embedding-2", "input": "a", "dimensions": NaN}', "1210"),
    (b'{"model": "embedding-2", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}", "1210"),
    (b'{"model": "embedding-2", "input": [[1, 2], [3, 4]]}', "1214"),
    (b'{"model": "embedding-2", "input": [101, 7592, 102]}', "1214"),
    (b'{"model": "embedding-2", "input": [""]}', "1214"),
    (b'{"model": "embedding-2", "input": "\\u0000"}', "200"),  # a NUL is text: embedded, not an error
    (b'{"model": "embedding-2", "input": "\\u200b\\u200b"}', "200"),  # zero-width spaces
    (b'{"model": "embedding-2", "input": "' + "\U0001f600".encode() * 300 + b'"}', "200"),
    (b'{"model": "embedding-2", "input": "' + b"a" * 30000 + b'"}', "1261"),  # tokenized, over 512 tokens
    (orjson.dumps({"model": "embedding-2", "input": ["hi"] * 5000}), "1214"),
    (orjson.dumps({"model": "embedding-2", "input": ["word " * 2000] * 20}), "1261"),  # > 8K tokens in all
    (orjson.dumps({"model": "embedding-3", "input": ["hello"] * 65}), "1214"),
    (orjson.dumps({"model": "embedding-2", "input": "hi", "request_id": "\n" * 50}), "200"),
    (orjson.dumps({"model": "embedding-2", "input": "hi", "user": {"a": [1]}, "sensitive_word_check": 5}), "200"),
]


@pytest.mark.parametrize(("content", "code"), BATTERY, ids=[f"case{i}" for i in range(len(BATTERY))])
def test_battery(client: httpx.Client, content: bytes, code: str) -> None:
    r = post_raw(client, content)
    assert r.status_code < 500, r.text
    if code == "200":
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text[:300]


def test_body_cap_by_content_length(client: httpx.Client) -> None:
    big = orjson.dumps({"model": "embedding-2", "input": "x" * (3 * 1024 * 1024)})
    r = post_raw(client, big)
    assert r.status_code == 400 and r.json()["error"]["code"] == "1210"
    assert "limit" in r.json()["error"]["message"]


def test_body_cap_when_streamed_without_length(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "embedding-2", "input": "'
        for _ in range(64):
            yield b"y" * 65536  # 4 MiB in all, chunked: no Content-Length
        yield b'"}'

    r = client.post(PATH, content=chunks())
    assert r.status_code == 400 and r.json()["error"]["code"] == "1210"


def test_lying_content_length_and_garbage_headers(server: Server, admin_key: str) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin_key.encode()
            + b"\r\nContent-Length: 5\r\n\r\n{\"mod"
        )  # fmt: skip
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    for value, code in (
        (b"Bearer \xffjunk.x", "1002"),
        ("Bearer abc.def", "1000"),
        ("Bearer a.b.c", "1002"),
        ("Basic dXNlcjpwYXNz", "1002"),
    ):
        r = httpx.post(
            server.url + PATH,
            content=b'{"model":"embedding-2","input":"a"}',
            headers={"Authorization": value, "Content-Type": "text/plain"},
        )
        assert r.status_code == 401 and r.json()["error"]["code"] == code, (value, r.text)
    # control characters in a header never reach the app: the HTTP parser answers 400 itself
    r = httpx.post(server.url + PATH, content=b"{}", headers={"Authorization": "Bearer \x01"})
    assert r.status_code == 400


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["embedding-2", "embedding-3", "", "x"]) | json_values,
        "input": st.text(max_size=200) | st.lists(st.text(max_size=50), max_size=8) | json_values,
        "dimensions": st.sampled_from([256, 512, 1024, 2048, 0, -1]) | json_values,
        "encoding_format": st.sampled_from(["float", "base64"]) | json_values,
        "input_type": st.sampled_from(["query", "document"]) | json_values,
        "request_id": st.text(max_size=140) | json_values,
        "user": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=fields)
def test_fuzzed_bodies_never_5xx(client: httpx.Client, body: dict[str, object]) -> None:
    r = client.post(PATH, content=json.dumps(body).encode())  # stdlib: big integers and Infinity too
    assert r.status_code in (200, 400), r.text[:300]
    if r.status_code == 400:
        assert r.json()["error"]["code"] in {"1210", "1211", "1213", "1214", "1261"}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_fuzzed_bytes_never_5xx(client: httpx.Client, raw: bytes) -> None:
    r = client.post(PATH, content=raw)
    assert r.status_code == 400 and r.json()["error"]["code"] in {"1210", "1211", "1213", "1214"}, r.text[:300]


def test_server_still_healthy_after_the_battery(server: Server) -> None:
    assert httpx.get(server.url + "/ready").status_code == 200
    metrics = httpx.get(server.url + "/metrics").text
    assert 'status="500"' not in metrics
