"""The PostgreSQL store, against a real PostgreSQL server started for these tests (skipped if the
machine has no PostgreSQL binaries or no psycopg)."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from embedding2.accounts import Accounts, AccountsSettings, AuthError, QuotaError, UsageRecord
from embedding2.accounts.credentials import make_jwt
from tests.accounts.test_ledger import CHILD, REPO

psycopg = pytest.importorskip("psycopg")


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a Unix socket; yields its base URL (database ``postgres``)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="embedding2-pg-"))
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the 'postgres' user
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.skip("running as root and there is no 'postgres' user")
        os.chown(base, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = 5432
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(base / "db"), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(base / "db"),
                "-o",
                f"-k {base} -c listen_addresses='' -p {port}",
                "-w",
                "-l",
                str(base / "log"),
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {exc}")
    try:
        yield f"postgresql://postgres@/postgres?host={base}&port={port}"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(base / "db"), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """A fresh, empty database on the test server."""
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.replace("/postgres?", f"/{name}?")


@pytest.fixture
def pg_accounts(pg_url: str, data_dir: Path) -> Iterator[Accounts]:
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir, database_url=pg_url, auth_cache_ttl_s=0.2))
    yield acc
    acc.close()


def test_postgres_keys_auth_and_revocation(pg_accounts: Accounts, pg_url: str, data_dir: Path) -> None:
    acc = pg_accounts
    assert "PostgresStore" in repr(acc)
    admin = acc.ensure_admin()
    assert admin is not None and acc.ensure_admin() is None
    key = acc.create_key("alice", "V2")
    for header in (f"Bearer {key.token}", key.token, f"Bearer {make_jwt(key.token)}", make_jwt(key.token)):
        p = acc.authenticate(header)
        assert (p.account_name, p.tier, p.concurrency) == ("alice", "V2", 300)
    assert [k.account_name for k in acc.list_keys()] == ["admin", "alice"]
    acc.revoke_key(key.key_id)
    with pytest.raises(AuthError) as info:
        acc.authenticate(key.token)
    assert info.value.code == "1000"
    with psycopg.connect(pg_url) as conn:  # the secret is sealed in the database too
        sealed = conn.execute("SELECT sealed_secret FROM api_keys WHERE id = %s", (key.key_id,)).fetchone()[0]
    assert key.token.split(".")[1].encode() not in bytes(sealed)
    # a second process sharing the database sees the same keys
    other = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir, database_url=pg_url))
    try:
        assert other.authenticate(admin).account_name == "admin"
    finally:
        other.close()


async def test_postgres_ledger_quota_and_report(pg_accounts: Accounts) -> None:
    acc = pg_accounts
    p = acc.authenticate(acc.create_key("bob", "V1").token)
    acc.set_token_quota("bob", 5000)
    day0 = 1_741_608_000.0  # 2025-03-10 12:00 UTC
    records = [
        UsageRecord(f"r{i}", p.account_id, p.key_id, "embedding-2", 10 + i, day0 + (i % 3) * 86400) for i in range(300)
    ]
    await asyncio.gather(*(acc.record(r) for r in records))
    await acc.record(records[0])  # idempotent: stored and charged once
    assert acc.ledger.commits < len(records) / 4
    summary = acc.usage("bob")
    assert [s.day for s in summary] == ["2025-03-10", "2025-03-11", "2025-03-12"]
    for d, s in enumerate(summary):
        mine = [r for i, r in enumerate(records) if i % 3 == d]
        assert (s.requests, s.tokens) == (len(mine), sum(r.tokens for r in mine))
        assert s.cost_nano == sum(acc.settings.cost_nano(r.tokens) for r in mine)
    total = sum(r.tokens for r in records)
    assert acc.get_account("bob").token_quota == 5000 - total
    with pytest.raises(QuotaError):
        acc.check_quota(p)
    acc.set_token_quota("bob", None)
    acc.set_balance("bob", Decimal("0.5"))
    acc.set_balance("bob", Decimal("0.25"), add=True)
    assert acc.get_account("bob").balance_nano == 750_000_000
    acc.check_quota(p)


def test_postgres_acknowledged_rows_survive_sigkill(pg_url: str, data_dir: Path) -> None:
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir, database_url=pg_url))
    key = acc.create_key("durable", "V3")
    acc.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDDING2_")}
    env["EMBEDDING2_DATABASE_URL"] = pg_url
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), "FULL", "1.0", key.token],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert child.stdout is not None
    acked: list[str] = []
    deadline = time.monotonic() + 60
    while len(acked) < 1000 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acked.append(line.strip())
    os.kill(child.pid, signal.SIGKILL)
    acked += [line.strip() for line in child.stdout]
    child.wait()
    assert len(acked) >= 1000
    with psycopg.connect(pg_url) as conn:
        present = {r[0] for r in conn.execute("SELECT request_id FROM usage").fetchall()}
    missing = [rid for rid in acked if rid not in present]
    assert not missing, f"{len(missing)} acknowledged rows lost"
