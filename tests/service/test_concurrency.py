"""Per-key concurrency limits through the real server: a V0 account has 50 slots; request 51 is refused
at once with 429/1302 (never queued), and every slot comes back, also when clients disconnect.

Two ways of keeping requests in flight at the same time:

- *held uploads* (deterministic, no compute): the server takes the account's slot before reading the
  body, so a raw connection that sends its headers and half its body holds a slot until we send the rest;
- *slow work* (what clients do): 80 simultaneous httpx requests queued behind a long request of another
  account, so that none of the 80 can finish before all have arrived.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest

from tests.service.conftest import Server

PATH = "/api/paas/v4/embeddings"


class Partial:
    """One raw HTTP/1.1 request whose body is sent in two parts."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
        self.reader, self.writer, self.rest = reader, writer, rest
        self.response: asyncio.Task[tuple[int, dict[str, str], bytes]] = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, port: int, key: str, body: bytes) -> Partial:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        half = len(body) // 2
        writer.write(head + body[:half])
        await writer.drain()
        return cls(reader, writer, body[half:])

    async def finish(self) -> None:
        self.writer.write(self.rest)
        await self.writer.drain()

    async def _read(self) -> tuple[int, dict[str, str], bytes]:
        line = await self.reader.readline()
        if not line:
            return 0, {}, b""  # closed without an answer (we closed it ourselves)
        status = int(line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    def close(self) -> None:
        self.writer.close()


def _body(i: int) -> bytes:
    return orjson.dumps({"model": "embedding-2", "input": f"request number {i}", "request_id": f"c-{i}"})


async def _hold(server: Server, key: str, n: int) -> tuple[list[Partial], list[Partial]]:
    """Open ``n`` held uploads; return (still waiting = holding a slot, answered at once)."""
    conns = [await Partial.open(server.port, key, _body(i)) for i in range(n)]
    await asyncio.sleep(0.05)
    deadline = time.monotonic() + 10
    expected_refusals = max(0, n - 50)
    while sum(c.response.done() for c in conns) < expected_refusals and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # anything else that was going to be answered early has been by now
    return [c for c in conns if not c.response.done()], [c for c in conns if c.response.done()]


@pytest.fixture(scope="module")
def v0_key(server: Server) -> str:
    return server.new_key("tier-v0", "V0")


async def _until_in_flight(server: Server, n: int, timeout: float = 30) -> None:
    """Wait until the server counts ``n`` embeddings requests in flight."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=server.url) as client:
        while True:
            text = (await client.get("/metrics")).text
            if _metric(text, "embedding2_requests_in_flight ") == n:
                return
            assert time.monotonic() < deadline, f"in flight never reached {n}"
            await asyncio.sleep(0.05)


async def test_held_uploads_exactly_50_slots_and_they_come_back(server: Server, v0_key: str) -> None:
    for _round in range(2):  # the second round proves every slot of the first came back
        waiting, refused = await _hold(server, v0_key, 80)
        assert len(waiting) == 50 and len(refused) == 30
        for c in refused:
            status, headers, body = c.response.result()
            assert status == 429 and orjson.loads(body)["error"]["code"] == "1302"
            assert headers["x-should-retry"] == "true" and "retry-after" in headers
            c.close()
        await asyncio.gather(*(c.finish() for c in waiting))
        answers = await asyncio.wait_for(asyncio.gather(*(c.response for c in waiting)), 120)
        assert [status for status, _, _ in answers] == [200] * 50
        for c in waiting:
            c.close()


async def test_disconnected_clients_give_their_slots_back(server: Server, v0_key: str) -> None:
    waiting, refused = await _hold(server, v0_key, 50)
    assert len(waiting) == 50 and not refused
    for c in waiting[:20]:  # these clients go away mid-upload
        c.close()
    await _until_in_flight(server, 30)  # the server noticed and gave their slots back
    more, refused = await _hold(server, v0_key, 20)  # so exactly 20 slots are free again
    assert len(more) == 20 and not refused
    extra = await Partial.open(server.port, v0_key, _body(999))
    status, _, body = await asyncio.wait_for(extra.response, 10)
    assert status == 429 and orjson.loads(body)["error"]["code"] == "1302"
    extra.close()
    for c in waiting[20:] + more:
        await c.finish()
    for c in waiting[20:] + more:
        assert (await asyncio.wait_for(c.response, 120))[0] == 200
        c.close()


async def test_80_simultaneous_requests_behind_slow_work(server: Server, admin_key: str, v0_key: str) -> None:
    """50 answered 200 and 30 answered 429/1302 at once, with real compute keeping them in flight."""
    long_text = "这是一段用来占住推理引擎的较长中文文本，内容本身并不重要。" * 12  # ~400 tokens
    blocker = {"model": "embedding-2", "input": [long_text + str(i) for i in range(16)]}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=300) as client:
        for attempt in range(2):
            blockers = [
                asyncio.ensure_future(client.post(PATH, json=blocker, headers={"Authorization": f"Bearer {admin_key}"}))
                for _ in range(1 + attempt)
            ]
            await asyncio.sleep(0.3)  # the blocker is tokenized and queued first
            arrivals: list[float] = []

            async def one(i: int, arrivals: list[float] = arrivals) -> tuple[int, str, float]:
                arrivals.append(time.monotonic())
                r = await client.post(PATH, content=_body(i), headers={"Authorization": f"Bearer {v0_key}"})
                code = r.json()["error"]["code"] if r.status_code != 200 else "ok"
                return r.status_code, code, time.monotonic()

            results = await asyncio.gather(*(one(i) for i in range(80)))
            await asyncio.gather(*blockers)
            first_ok = min((t for status, _, t in results if status == 200), default=0.0)
            last_refusal = max((t for status, _, t in results if status == 429), default=0.0)
            if first_ok > max(arrivals) and first_ok > last_refusal:  # all 80 were in flight together
                break
        else:
            pytest.skip("the machine is too loaded to keep 80 requests in flight at once")
    statuses = sorted((status, code) for status, code, _ in results)
    assert statuses.count((200, "ok")) == 50
    assert statuses.count((429, "1302")) == 30


def _metric(text: str, prefix: str) -> float:
    """Sum of the samples whose line starts with ``prefix`` (a name plus ``{`` or a space)."""
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


async def test_a_client_that_disconnects_is_not_computed_nor_billed(server: Server, admin_key: str) -> None:
    long_text = "这是一段用来占住推理引擎的较长中文文本，内容本身并不重要。" * 12
    blocker = {"model": "embedding-2", "input": [long_text + str(i) for i in range(16)]}
    async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
        before = (await client.get("/metrics")).text
        busy = asyncio.ensure_future(client.post(PATH, json=blocker, headers={"Authorization": f"Bearer {admin_key}"}))
        await asyncio.sleep(0.3)  # the blocker is in the engine
        body = orjson.dumps({"model": "embedding-2", "input": [f"{long_text} gone {i}" for i in range(8)]})
        gone = await Partial.open(server.port, admin_key, body)
        await gone.finish()  # the whole request is sent, tokenized and queued behind the blocker ...
        await asyncio.sleep(0.2)
        gone.close()  # ... and its client goes away before its turn
        assert (await busy).status_code == 200
        await asyncio.sleep(0.3)
        after = (await client.get("/metrics")).text
    computed = _metric(after, "embedding2_batch_size_sum ") - _metric(before, "embedding2_batch_size_sum ")
    assert computed == 16, "only the blocker's 16 texts were computed; the 8 queued texts were dropped"
    gone_count = _metric(after, 'embedding2_requests_total{code="499"') - _metric(
        before, 'embedding2_requests_total{code="499"'
    )
    assert gone_count == 1
