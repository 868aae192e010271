"""Billing survives a crash and a graceful stop: every 200 has its committed ledger row, failures have none.

The server answers only after the request's usage row is COMMITTED, so a SIGKILL mid-burst may lose
responses but never a row for a response that was delivered. The reverse can happen in one narrow
window: a row committed for a request whose response was still being written when the process died
(billed but not delivered); such rows can only belong to requests that were in flight at the kill.
The ledger's key is ``<client request_id>:<response id>``, so rows are matched by the client's id.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import httpx

from tests.service.conftest import Server, start_server

PATH = "/api/paas/v4/embeddings"
TEXT = "账本测试：每一个成功的请求都必须在账本里留下记录。The ledger must hold every billed request. " * 2


def ledger_rows(data_dir: Path) -> dict[str, int]:
    """client request_id -> tokens billed, read straight from the SQLite ledger."""
    con = sqlite3.connect(f"file:{data_dir / 'embedding2.db'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT request_id, tokens FROM usage").fetchall()
    finally:
        con.close()
    out: dict[str, int] = {}
    for request_id, tokens in rows:
        client_id = request_id.rsplit(":", 1)[0]
        assert client_id not in out, f"two rows for {client_id}"
        out[client_id] = tokens
    return out


async def burst(
    server: Server, key: str, n: int, concurrency: int, *, stop_after: int, sig: int, bad_every: int = 5
) -> tuple[dict[str, tuple[int, int]], set[str], float]:
    """``n`` requests; after ``stop_after`` successes send ``sig`` to the server.

    Returns ({request_id: (status, tokens)} for answered requests, request ids that got no answer,
    the time the signal was sent)."""
    answered: dict[str, tuple[int, int]] = {}
    unanswered: set[str] = set()
    sent_at = [0.0]
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:

        async def one(i: int) -> None:
            rid = f"burst-{sig}-{i}"
            bad = i % bad_every == 0
            body = {"model": "embedding-2", "input": "" if bad else [TEXT + str(i), str(i)], "request_id": rid}
            async with gate:
                try:
                    r = await client.post(PATH, json=body, headers={"Authorization": f"Bearer {key}"})
                except httpx.TransportError:
                    unanswered.add(rid)
                    return
            tokens = r.json()["usage"]["total_tokens"] if r.status_code == 200 else 0
            answered[rid] = (r.status_code, tokens)
            if sum(status == 200 for status, _ in answered.values()) == stop_after and not sent_at[0]:
                sent_at[0] = time.monotonic()
                server.proc.send_signal(sig)

        await asyncio.gather(*(one(i) for i in range(n)))
    return answered, unanswered, sent_at[0]


async def test_sigkill_mid_burst_then_restart(tmp_path: Path, cache_dir: Path) -> None:
    data_dir = tmp_path / "data"
    srv = start_server(data_dir, cache_dir)
    try:
        key = srv.new_key("crash", "V3")
        answered, unanswered, _ = await burst(srv, key, 100, 16, stop_after=20, sig=signal.SIGKILL)
    finally:
        srv.stop(signal.SIGKILL)
    ok = {rid: tokens for rid, (status, tokens) in answered.items() if status == 200}
    failed = {rid for rid, (status, _) in answered.items() if status != 200}
    assert len(ok) >= 20 and unanswered, "the kill should have cut the burst short"
    assert {status for status, _ in answered.values()} <= {200, 400}

    srv2 = start_server(data_dir, cache_dir)  # same data dir: the store and the master key are reused
    try:
        assert srv2.admin_key is None  # shown on the first start only
        rows = ledger_rows(data_dir)
        for rid, tokens in ok.items():
            assert rows.get(rid) == tokens, f"{rid} was answered 200 but its ledger row is missing or wrong"
        assert not failed & rows.keys(), "a request answered with an error was billed"
        billed_undelivered = (rows.keys() & unanswered) - ok.keys()
        assert len(billed_undelivered) <= 16  # only requests in flight at the kill (16 connections)
        assert rows.keys() <= ok.keys() | unanswered
        r = httpx.post(srv2.url + PATH, json={"model": "embedding-2", "input": "after restart"},
                       headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert r.status_code == 200
    finally:
        rc = srv2.stop(signal.SIGINT)  # Ctrl-C is a graceful stop too
    assert rc in (0, -signal.SIGINT, 1), srv2.log()
    assert "Traceback" not in srv2.log(), srv2.log()


async def test_sigterm_finishes_in_flight_requests_and_flushes_the_ledger(tmp_path: Path, cache_dir: Path) -> None:
    data_dir = tmp_path / "data"
    srv = start_server(data_dir, cache_dir)
    key = srv.new_key("graceful", "V3")
    try:
        answered, _, sent_at = await burst(srv, key, 80, 12, stop_after=15, sig=signal.SIGTERM)
        rc = srv.proc.wait(60)  # exits by itself once drained
    finally:
        srv.stop(signal.SIGKILL)
    assert rc in (0, -signal.SIGTERM), srv.log()
    assert "Traceback" not in srv.log(), srv.log()
    assert {status for status, _ in answered.values()} <= {200, 400}
    ok = {rid: tokens for rid, (status, tokens) in answered.items() if status == 200}
    rows = ledger_rows(data_dir)
    for rid, tokens in ok.items():
        assert rows.get(rid) == tokens
    assert rows.keys() == ok.keys(), "after a graceful stop, billed == delivered exactly"
    assert sent_at and len(ok) > 15, "requests in flight at SIGTERM were finished, not dropped"
