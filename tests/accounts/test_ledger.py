"""The usage ledger: durable group commit (checked with SIGKILL), idempotency, charging, quotas."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from embedding2.accounts import Accounts, AccountsSettings, QuotaError, UsageRecord
from embedding2.accounts.sqlite import DB_FILE, SQLiteStore

# records usage from 64 concurrent streams and prints each request_id once record() has returned
CHILD = Path(__file__).with_name("ledger_child.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("synchronous", "interval_ms"), [("FULL", 2.0), ("NORMAL", 0.0)])
def test_acknowledged_rows_survive_sigkill(data_dir: Path, synchronous: str, interval_ms: float) -> None:
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    key = acc.create_key("durable", "V3")
    acc.close()
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), synchronous, str(interval_ms), key.token],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert child.stdout is not None
    acked: list[str] = []
    deadline = time.monotonic() + 60
    while len(acked) < 1500 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acked.append(line.strip())
    os.kill(child.pid, signal.SIGKILL)  # no chance to flush or close anything
    acked += [line.strip() for line in child.stdout]  # lines already written were acknowledged too
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 1500

    store = SQLiteStore(data_dir / DB_FILE)
    try:
        present = {row[0] for row in store._read("SELECT request_id FROM usage")}
    finally:
        store.close()
    missing = [rid for rid in acked if rid not in present]
    assert not missing, f"{len(missing)} acknowledged rows lost, e.g. {missing[:3]}"
    print(f"{synchronous}: {len(acked)} acknowledged, {len(present)} committed")


async def test_group_commit_batches_and_waits_for_commit(accounts: Accounts) -> None:
    p = accounts.authenticate(accounts.create_key("batch", "V3").token)
    commits_before = accounts.ledger.commits
    n = 400
    await asyncio.gather(
        *(accounts.record(UsageRecord(f"g-{i}", p.account_id, p.key_id, "embedding-2", i + 1)) for i in range(n))
    )
    commits = accounts.ledger.commits - commits_before
    assert 1 <= commits < n / 4  # rows share COMMITs
    # every row is readable from a fresh connection the moment record() returned
    other = SQLiteStore(accounts.store.path)  # type: ignore[attr-defined]
    try:
        (days,) = other.usage_summary()
        assert (days.requests, days.tokens) == (n, n * (n + 1) // 2)
    finally:
        other.close()


def test_record_sync_from_threads_and_idempotency(accounts: Accounts) -> None:
    p = accounts.authenticate(accounts.create_key("sync", "V1").token)

    def work(t: int) -> None:
        for i in range(25):
            accounts.record_sync(UsageRecord(f"t{t}-{i}", p.account_id, p.key_id, "embedding-3", 10))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # a retried request_id is stored and billed once
    accounts.record_sync(UsageRecord("t0-0", p.account_id, p.key_id, "embedding-3", 999_999))
    (day,) = accounts.usage("sync")
    assert (day.requests, day.tokens) == (200, 2000)
    assert day.cost_nano == accounts.settings.cost_nano(10) * 200


def test_token_quota_and_balance(accounts: Accounts, data_dir: Path) -> None:
    p = accounts.authenticate(accounts.create_key("metered", "V0").token)
    accounts.check_quota(p)  # unmetered by default

    accounts.set_token_quota("metered", 1000)
    accounts.check_quota(p)
    accounts.record_sync(UsageRecord("q1", p.account_id, p.key_id, "embedding-2", 600))
    accounts.check_quota(p)  # 400 left
    accounts.record_sync(UsageRecord("q2", p.account_id, p.key_id, "embedding-2", 600))
    with pytest.raises(QuotaError) as info:
        accounts.check_quota(p)
    assert (info.value.code, info.value.http_status) == ("1113", 429)
    assert accounts.get_account("metered").token_quota == -200
    accounts.set_token_quota("metered", 500, add=True)
    accounts.check_quota(p)
    accounts.set_token_quota("metered", None)
    accounts.check_quota(p)

    # prepaid balance in yuan: 0.001 yuan buys 2,000 tokens at 0.5 yuan per million
    accounts.set_balance("metered", Decimal("0.001"))
    accounts.record_sync(UsageRecord("b1", p.account_id, p.key_id, "embedding-2", 1999))
    accounts.check_quota(p)
    accounts.record_sync(UsageRecord("b2", p.account_id, p.key_id, "embedding-2", 1))
    with pytest.raises(QuotaError):
        accounts.check_quota(p)
    assert accounts.get_account("metered").balance_nano == 0

    # a top-up made by another process (the CLI) is seen once the cache entry expires
    other = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    try:
        other.set_balance("metered", Decimal("1"), add=True)
    finally:
        other.close()
    time.sleep(0.3)
    accounts.check_quota(p)
    assert accounts.get_account("metered").balance_nano == 10**9


def test_close_flushes_queued_rows(data_dir: Path) -> None:
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir, ledger_commit_interval_ms=50))
    p = acc.authenticate(acc.create_key("flush").token)
    done: list[BaseException | None] = []
    for i in range(100):
        acc.ledger.submit(acc._row(UsageRecord(f"f{i}", p.account_id, p.key_id, "embedding-2", 1)), done.append)
    acc.close()
    assert done == [None] * 100
    again = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    try:
        assert again.usage()[0].requests == 100
    finally:
        again.close()


async def test_failed_commit_fails_waiters_and_writer_survives(accounts: Accounts) -> None:
    p = accounts.authenticate(accounts.create_key("fail", "V1").token)
    await accounts.record(UsageRecord("ok-1", p.account_id, p.key_id, "embedding-2", 5))
    lock_holder = SQLiteStore(accounts.store.path, busy_timeout_ms=10)  # type: ignore[attr-defined]
    accounts.store._ledger_conn.execute("PRAGMA busy_timeout = 50")  # type: ignore[attr-defined]
    lock_holder._conn.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        with pytest.raises(Exception) as info:
            await asyncio.wait_for(accounts.record(UsageRecord("x", p.account_id, p.key_id, "m", 5)), 10)
        assert getattr(info.value, "code", None) == "500"
    finally:
        lock_holder._conn.execute("ROLLBACK")
        lock_holder.close()
    await accounts.record(UsageRecord("ok-2", p.account_id, p.key_id, "embedding-2", 5))
    assert accounts.usage("fail")[0].requests == 2
