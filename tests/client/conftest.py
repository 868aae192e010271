"""One real `embedding2 serve` process on 127.0.0.1 for the SDK's tests, plus its ledger and key helpers.

The server runs with an extra tier, ``tiny`` (2 requests in flight), next to the contract's V0-V3, so
that the retry tests meet real 429/1302 answers. Keys are made with the ``keys create`` command (its
last stdout line is the key), each test on its own account, so that each reads its own ledger rows.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import start_server

TIERS = {"V0": 50, "V1": 100, "V2": 300, "V3": 500, "tiny": 2}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDING2_", "ZAI_", "ZHIPUAI_"))}
    env["EMBEDDING2_TIER_LIMITS"] = json.dumps(TIERS)
    return env


@dataclass
class LedgerRow:
    request_id: str
    tokens: int


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/paas/v4"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def new_key(self, account: str, tier: str = "V0") -> str:
        """`keys create` for ``account`` (created with ``tier``); the key is the last stdout line."""
        out = subprocess.run(
            [sys.executable, "-m", "embedding2.accounts.cli", "keys", "create", "--tier", tier,
             "--account", account, "--data-dir", str(self.data_dir)],
            env=_env(), capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        return out.stdout.strip().splitlines()[-1]

    def accounts_cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "embedding2.accounts.cli", *args, "--data-dir", str(self.data_dir)],
            env=_env(), capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        return out.stdout

    def ledger(self, account: str) -> list[LedgerRow]:
        """The account's usage rows, read straight from the server's SQLite file."""
        db = sqlite3.connect(f"file:{self.data_dir / 'embedding2.db'}?mode=ro", uri=True, timeout=30)
        try:
            rows = db.execute(
                "SELECT u.request_id, u.tokens FROM usage u JOIN accounts a ON a.id = u.account_id WHERE a.name = ?",
                (account,),
            ).fetchall()
        finally:
            db.close()
        return [LedgerRow(str(r), int(t)) for r, t in rows]

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus counter's samples whose labels include ``labels``."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"^{re.escape(name)}\{{(.*)\}} ([0-9.e+-]+)$", line)
            if not m:
                continue
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(m.group(2))
        return total


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Server]:
    started = start_server(
        tmp_path_factory.mktemp("client-server") / "data",
        cache_dir,
        timeout=240,
        env={"EMBEDDING2_TIER_LIMITS": json.dumps(TIERS)},
    )
    try:
        yield Server(started.proc, started.port, started.data_dir, started.log_path)
    finally:
        started.stop()
