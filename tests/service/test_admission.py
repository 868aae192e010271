"""Admission at the HTTP protocol (``service/admission.py``): a request over its account's limit is
answered 429/1302 from its headers alone, its unread body is skipped, and the connection goes on.

A server of its own, with one slot per V0 account (so that one held upload puts an account at its
limit) and a keep-alive timeout of one second (so that a keep-alive timer armed by a refusal at the
wrong moment would show within the test). The same refusal through the ASGI entry point (an in-process
app, as a server without the protocol hook would give it) must carry the same answer.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from embedding2.accounts import AccountsSettings
from embedding2.service.admission import admit, refusing_protocol
from embedding2.service.app import create_app
from embedding2.service.config import ServiceSettings
from embedding2.service.metrics import RequestTiming
from embedding2.service.routes import EMBEDDINGS_PATHS
from embedding2.service.server import build_state
from embedding2.service.state import ServiceState
from embedding2.settings import Settings
from tests.service.conftest import Server, start_server
from tests.service.test_concurrency import Partial

PATH = "/api/paas/v4/embeddings"
TIERS = '{"V0": 1, "V1": 100, "V2": 300, "V3": 500}'


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("admission") / "data",
        cache_dir,
        env={"EMBEDDING2_TIER_LIMITS": TIERS, "EMBEDDING2_KEEP_ALIVE_S": "1"},
    )
    yield srv
    srv.stop()


def _request(key: str, body: bytes, *, headers_only: bool = False) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head if headers_only else head + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 60)
    return int(lines[0].split()[1]), headers, body


def _texts(n: int, tag: str) -> bytes:
    return orjson.dumps({"model": "embedding-2", "input": [f"{tag} text number {i}" for i in range(n)]})


async def _held(server: Server, key: str) -> Partial:
    """An upload of ``key``'s account that holds its only slot until finished."""
    held = await Partial.open(server.port, key, _texts(1, "held"))
    await asyncio.sleep(0.2)
    assert not held.response.done()
    return held


async def test_a_refusal_skips_its_body_and_the_connection_goes_on(small_server: Server) -> None:
    full, other = small_server.new_key("full-a", "V0"), small_server.new_key("other-a", "V1")
    held = await _held(small_server, full)
    reader, writer = await asyncio.open_connection("127.0.0.1", small_server.port)
    refused_body = _texts(4000, "refused")  # ~130 kB that nobody reads
    writer.write(
        _request(full, refused_body)
        + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        + _request(other, _texts(2, "served"))
    )  # three requests in one write (pipelined)
    await writer.drain()
    status, headers, body = await _answer(reader)
    assert status == 429 and orjson.loads(body)["error"]["code"] == "1302"
    assert headers["x-should-retry"] == "true" and headers["retry-after-ms"] and headers["content-type"]
    assert orjson.loads(body)["request_id"] == headers["x-request-id"]
    assert (await _answer(reader))[:1] == (200,)  # /health
    status, _, body = await _answer(reader)
    assert status == 200 and len(orjson.loads(body)["data"]) == 2
    writer.write(_request(other, _texts(1, "again")))  # and the connection is still good
    await writer.drain()
    assert (await _answer(reader))[0] == 200
    writer.close()
    await held.finish()
    assert (await asyncio.wait_for(held.response, 60))[0] == 200
    held.close()


async def test_a_refusal_does_not_time_out_the_request_behind_it(small_server: Server) -> None:
    """A refusal completes at once and arms the connection's keep-alive timer; a request parsed right
    after it on the same connection must disarm it, or the connection would close under that request."""
    full, other = small_server.new_key("full-b", "V0"), small_server.new_key("other-b", "V1")
    held = await _held(small_server, full)
    reader, writer = await asyncio.open_connection("127.0.0.1", small_server.port)
    slow = _texts(1, "slow upload")
    writer.write(_request(full, _texts(1, "refused")) + _request(other, slow, headers_only=True) + slow[:5])
    await writer.drain()
    assert (await _answer(reader))[0] == 429
    await asyncio.sleep(2.5)  # well past the 1 s keep-alive timeout, the second request still uploading
    writer.write(slow[5:])
    await writer.drain()
    status, _, body = await _answer(reader)
    assert status == 200 and len(orjson.loads(body)["data"]) == 1
    writer.close()
    await held.finish()
    assert (await asyncio.wait_for(held.response, 60))[0] == 200
    held.close()


def test_the_installed_uvicorn_has_the_admission_hooks() -> None:
    """Without them the server still refuses, at the ASGI entry, but slower: a uvicorn upgrade that
    removes them must be noticed here rather than in the benchmark."""
    assert refusing_protocol(None, frozenset(EMBEDDINGS_PATHS)) is not None  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[ServiceState]:
    data_dir = tmp_path_factory.mktemp("admission-asgi")
    accounts = AccountsSettings(data_dir=data_dir, tier_limits=orjson.loads(TIERS))
    state = build_state(ServiceSettings(data_dir=data_dir), settings, accounts, out=io.StringIO())
    yield state
    state.accounts.close()
    state.embedder.close()


@pytest.fixture
async def asgi_client(in_process: ServiceState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(in_process, owns_resources=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://in-process") as client:
        yield client


async def test_the_asgi_entry_refuses_the_same_way(
    small_server: Server, in_process: ServiceState, asgi_client: httpx.AsyncClient
) -> None:
    # the protocol's refusal, from the real server
    full = small_server.new_key("full-c", "V0")
    held = await _held(small_server, full)
    async with httpx.AsyncClient(base_url=small_server.url) as client:
        protocol = await client.post(PATH, content=_texts(1, "x"), headers={"Authorization": f"Bearer {full}"})
    await held.finish()
    held.close()
    # the ASGI entry's refusal, in process, with the account's only slot taken
    key = in_process.accounts.create_key("full-c", "V0").token
    principal = in_process.accounts.authenticate(f"Bearer {key}")
    slot = in_process.accounts.try_slot(principal)
    assert slot is not None
    try:
        asgi = await asgi_client.post(PATH, content=_texts(1, "x"), headers={"Authorization": f"Bearer {key}"})
    finally:
        slot.release()
    answered = await asgi_client.post(PATH, content=_texts(1, "x"), headers={"Authorization": f"Bearer {key}"})
    assert answered.status_code == 200  # the slot came back
    for r in (protocol, asgi):
        assert r.status_code == 429
        assert r.json()["request_id"] == r.headers["x-request-id"]
    assert protocol.json()["error"] == asgi.json()["error"]
    assert set(protocol.headers) - {"date"} == set(asgi.headers)
    for name in ("x-should-retry", "retry-after-ms", "retry-after", "content-type"):
        assert protocol.headers[name] == asgi.headers[name]


async def _read_all(reader: asyncio.StreamReader, n: int) -> list[int]:
    return [(await _answer(reader))[0] for _ in range(n)]


async def test_a_long_run_of_pipelined_refusals(small_server: Server) -> None:
    """Refusals of requests queued behind one in flight are answered one after the other, each
    starting the next: 1,500 of them in a row (a recursion, if each started the next from inside the
    previous, would overflow the stack after a few hundred)."""
    full, other = small_server.new_key("full-d", "V0"), small_server.new_key("other-d", "V1")
    held = await _held(small_server, full)
    reader, writer = await asyncio.open_connection("127.0.0.1", small_server.port, limit=2**20)
    refused = _request(full, _texts(1, "refused"))
    writer.write(
        _request(other, _texts(8, "in flight first"))
        + refused * 1500
        + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    await writer.drain()
    statuses = await asyncio.wait_for(_read_all(reader, 1502), 120)
    assert statuses[0] == 200 and statuses[1:-1] == [429] * 1500 and statuses[-1] == 200
    writer.close()
    await held.finish()
    assert (await asyncio.wait_for(held.response, 60))[0] == 200
    held.close()


async def test_nothing_runs_after_a_refusal_closes_an_http10_connection(small_server: Server) -> None:
    full, other = small_server.new_key("full-e", "V0"), small_server.new_key("other-e", "V1")
    held = await _held(small_server, full)
    reader, writer = await asyncio.open_connection("127.0.0.1", small_server.port)
    body = _texts(1, "refused")
    http10 = (
        f"POST {PATH} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nAuthorization: Bearer {full}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    writer.write(http10 + _request(other, _texts(1, "never served")))
    await writer.drain()
    status, headers, _ = await _answer(reader)
    assert status == 429 and headers.get("connection") == "close"
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, and nothing more was answered
    writer.close()
    await asyncio.sleep(1.0)  # a request started anyway would have been computed and billed by now
    accounts = small_server.accounts()
    assert [u for u in accounts.usage("other-e")] == []
    await held.finish()
    assert (await asyncio.wait_for(held.response, 60))[0] == 200
    held.close()


async def test_a_refusal_after_expect_100_continue_closes_the_connection(small_server: Server) -> None:
    """The client may or may not send the body after a final answer to ``Expect: 100-continue``; on a
    kept-alive connection its next request could be read as that body, so the connection is closed."""
    full = small_server.new_key("full-f", "V0")
    held = await _held(small_server, full)
    reader, writer = await asyncio.open_connection("127.0.0.1", small_server.port)
    head = _request(full, _texts(1, "never sent"), headers_only=True)
    writer.write(head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
    await writer.drain()
    status, headers, _ = await _answer(reader)
    assert status == 429 and headers.get("connection") == "close"
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    await held.finish()
    assert (await asyncio.wait_for(held.response, 60))[0] == 200
    held.close()


async def test_an_idle_connection_closes_after_a_refused_body_arrives_late(small_server: Server) -> None:
    """The keep-alive timeout (1 s here) still applies when a refused request's body comes in a later
    read than its headers (that read disarms the timer; the end of the body arms it again)."""
    full = small_server.new_key("full-g", "V0")
    held = await _held(small_server, full)
    reader, writer = await asyncio.open_connection("127.0.0.1", small_server.port)
    body = _texts(1, "late body")
    writer.write(_request(full, body, headers_only=True))
    await writer.drain()
    assert (await _answer(reader))[0] == 429
    await asyncio.sleep(0.3)
    writer.write(body)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server within the timeout
    writer.close()
    await held.finish()
    assert (await asyncio.wait_for(held.response, 60))[0] == 200
    held.close()


async def test_a_store_failure_during_admission_is_a_500_with_the_envelope(tmp_path: Path, settings: Settings) -> None:
    """Admission leaves a request it cannot decide to the route, which answers a failing store with
    500 and the contract's envelope (the SDKs retry 500), not a transport-level error."""
    accounts = AccountsSettings(data_dir=tmp_path, tier_limits=orjson.loads(TIERS))
    state = build_state(ServiceSettings(data_dir=tmp_path), settings, accounts, out=io.StringIO())
    try:
        key = state.accounts.create_key("store-gone", "V1").token
        state.accounts.store.close()  # every query from now on fails
        scope = {
            "type": "http",
            "method": "POST",
            "path": PATH,
            "headers": [(b"authorization", f"Bearer {key}".encode())],
        }
        assert admit(state, scope) is None
        transport = httpx.ASGITransport(app=create_app(state, owns_resources=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://in-process") as client:
            r = await client.post(PATH, content=_texts(1, "x"), headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 500 and r.json()["error"]["code"] == "500"
        assert key.split(".")[1] not in r.text
    finally:
        state.embedder.close()


def test_raw_timing_header_lines_match_the_timing_headers() -> None:
    """Refusals written raw carry the same timing headers as every other answer."""
    timing = RequestTiming()
    timing.lap("auth")
    timing.lap("parse")
    timing.finish()
    expected = "".join(f"{name}: {value}\r\n" for name, value in timing.headers().items()).encode()
    assert timing.header_lines() == expected
