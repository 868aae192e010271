"""The `embedding2 keys | accounts | usage` commands, run as real subprocesses on a real data directory."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

import embedding2.cli
from embedding2.accounts import Accounts, AccountsSettings, AuthError, UsageRecord
from embedding2.accounts import cli as accounts_cli

# the main command once embedding2.cli registers this layer; the module's own entry point until then
_MODULE = "embedding2.cli" if "embedding2.accounts.cli" in embedding2.cli._REGISTRARS else "embedding2.accounts.cli"


def run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDDING2_")}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", _MODULE, *args], capture_output=True, text=True, env=full_env, timeout=120
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _open(data_dir: Path) -> Accounts:
    return Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))


def test_keys_create_list_revoke(data_dir: Path) -> None:
    d = str(data_dir)
    created = run("keys", "create", "--tier", "V1", "--account", "alice", "--data-dir", d)
    lines = created.stdout.splitlines()
    token = lines[-1]
    key_id, secret = token.split(".")
    assert token.strip() == token and len(secret) >= 43
    assert key_id in created.stderr and secret not in created.stderr

    second = run("keys", "create", "--account", "alice", "--data-dir", d).stdout.splitlines()[-1]
    third = run("keys", "create", "--tier", "V3", "--account", "bob", "--data-dir", d).stdout.splitlines()[-1]
    acc = _open(data_dir)
    try:
        p = acc.authenticate(f"Bearer {token}")
        assert (p.account_name, p.tier, p.concurrency) == ("alice", "V1", 100)
        assert acc.authenticate(second).account_id == p.account_id
        assert acc.authenticate(third).tier == "V3"
    finally:
        acc.close()

    listed = run("keys", "list", "--json", "--data-dir", d)
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["account"], r["revoked"]) for r in rows] == [
        (key_id, "alice", False),
        (second.split(".")[0], "alice", False),
        (third.split(".")[0], "bob", False),
    ]
    table = run("keys", "list", "--data-dir", d).stdout
    for t in (token, second, third):
        assert t.split(".")[1] not in listed.stdout + table
        assert t.split(".")[0] in table

    run("keys", "revoke", key_id, "--data-dir", d)
    rows = json.loads(run("keys", "list", "--json", "--account", "alice", "--data-dir", d).stdout)
    assert [r["revoked"] for r in rows] == [True, False]
    acc = _open(data_dir)
    try:
        with pytest.raises(AuthError) as info:
            acc.authenticate(token)
        assert info.value.code == "1000"
        assert acc.authenticate(second).account_name == "alice"
    finally:
        acc.close()

    # the tier given to `keys create` applies to the (existing) account
    run("keys", "create", "--tier", "V2", "--account", "alice", "--data-dir", d)
    acc = _open(data_dir)
    try:
        assert acc.authenticate(second).concurrency == 300
    finally:
        acc.close()

    bad = run("keys", "create", "--tier", "V7", "--data-dir", d, check=False)
    assert bad.returncode == 2 and "V7" in bad.stderr and bad.stdout == ""


def test_accounts_commands(data_dir: Path) -> None:
    d = str(data_dir)
    run("accounts", "create", "carol", "--tier", "V3", "--data-dir", d)
    run("accounts", "set-tier", "carol", "V1", "--data-dir", d)
    run("accounts", "set-quota", "carol", "1000", "--data-dir", d)
    run("accounts", "set-quota", "carol", "250", "--add", "--data-dir", d)
    run("accounts", "set-balance", "carol", "2.5", "--data-dir", d)
    out = run("accounts", "set-balance", "carol", "0.25", "--add", "--data-dir", d)
    assert json.loads(out.stdout)["balance_yuan"] == "2.75"
    run("accounts", "create", "dan", "--data-dir", d)
    listed = {a["name"]: a for a in json.loads(run("accounts", "list", "--json", "--data-dir", d).stdout)}
    assert set(listed) == {"carol", "dan"}
    carol = listed["carol"]
    assert (carol["tier"], carol["concurrency"], carol["token_quota"], carol["balance_yuan"]) == (
        "V1",
        100,
        1250,
        "2.75",
    )
    assert (listed["dan"]["tier"], listed["dan"]["balance_yuan"], listed["dan"]["token_quota"]) == ("V0", None, None)

    run("accounts", "set-quota", "carol", "--unlimited", "--data-dir", d)
    acc = _open(data_dir)
    try:
        row = acc.get_account("carol")
        assert (row.token_quota, row.balance_nano) == (None, 2_750_000_000)
    finally:
        acc.close()
    assert "carol" in run("accounts", "list", "--data-dir", d).stdout


def test_command_errors(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refusals exit with status 2 and a message on standard error (in-process: same code, faster)."""
    d = str(data_dir)
    assert accounts_cli.main(["accounts", "create", "carol", "--data-dir", d]) == 0
    for args in (
        ("accounts", "set-tier", "carol", "V9"),
        ("accounts", "set-tier", "nobody", "V1"),
        ("accounts", "create", "carol"),
        ("accounts", "set-balance", "carol", "lots"),
        ("accounts", "set-balance", "carol", "NaN"),
        ("accounts", "set-quota", "carol"),
        ("accounts", "set-quota", "carol", "12", "--unlimited"),
        ("accounts", "set-quota", "carol", "1.5"),
        ("keys", "revoke", "nonexistent"),
        ("keys", "list", "--account", "nobody"),
        ("usage", "--since", "yesterday"),
    ):
        capsys.readouterr()
        assert accounts_cli.main([*args, "--data-dir", d]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("embedding2: error "), args


def test_usage_report(data_dir: Path) -> None:
    rng = random.Random(7)
    acc = _open(data_dir)
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    try:
        principals = [acc.authenticate(acc.create_key(name, "V1").token) for name in ("erin", "fay")]
        base = datetime(2025, 3, 10, 12, 0, tzinfo=timezone.utc)
        for i in range(120):
            p = principals[i % 2]
            when = base + timedelta(days=rng.randrange(4), hours=rng.uniform(-11.9, 11.9))
            tokens = rng.randrange(1, 5000)
            acc.record_sync(UsageRecord(f"u{i}", p.account_id, p.key_id, "embedding-2", tokens, when.timestamp()))
            bucket = expected[(p.account_name, when.strftime("%Y-%m-%d"))]
            bucket[0] += 1
            bucket[1] += tokens
    finally:
        acc.close()

    report = json.loads(run("usage", "--json", "--data-dir", str(data_dir)).stdout)
    got = {(r["account"], r["day"]): [r["requests"], r["tokens"]] for r in report["days"]}
    assert got == expected
    for r in report["days"]:
        assert Decimal(r["cost_yuan"]) == Decimal(r["tokens"]) * Decimal("0.5") / 10**6
    for total in report["totals"]:
        mine = [v for (name, _), v in expected.items() if name == total["account"]]
        assert total["requests"] == sum(v[0] for v in mine)
        assert total["tokens"] == sum(v[1] for v in mine)
        assert Decimal(total["cost_yuan"]) == Decimal(total["tokens"]) * Decimal("0.5") / 10**6

    since = "2025-03-12"
    filtered = json.loads(
        run("usage", "--json", "--account", "fay", "--since", since, "--data-dir", str(data_dir)).stdout
    )
    want = {k: v for k, v in expected.items() if k[0] == "fay" and k[1] >= since}
    assert {(r["account"], r["day"]): [r["requests"], r["tokens"]] for r in filtered["days"]} == want

    table = run("usage", "--data-dir", str(data_dir)).stdout
    for (name, day), (requests, tokens) in expected.items():
        assert any(line.split()[:4] == [name, day, str(requests), str(tokens)] for line in table.splitlines())


def test_data_dir_from_environment(tmp_path: Path) -> None:
    target = tmp_path / "from-env"
    token = run("keys", "create", env={"EMBEDDING2_DATA_DIR": str(target)}).stdout.splitlines()[-1]
    acc = _open(target)
    try:
        assert acc.authenticate(token).account_name == "default"
    finally:
        acc.close()
