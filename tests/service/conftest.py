"""Real `embedding2 serve` processes on 127.0.0.1 for the service tests.

``start_server`` launches the CLI in a subprocess on a free port with a fresh data directory and the
shared test model cache, waits for ``GET /ready`` to answer 200 and reads the admin key the first
start prints. ``server`` is one such process shared by the whole session (most tests only need a
running service); tests that kill or stop their server start their own.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from embedding2.accounts import Accounts, AccountsSettings

_KEY_LINE = re.compile(r"EMBEDDING2_ADMIN_KEY=(\S+)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path
    admin_key: str | None
    _accounts: Accounts | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def accounts(self) -> Accounts:
        """The same store the server uses, opened from the test process (SQLite, WAL)."""
        if self._accounts is None:
            self._accounts = Accounts.open(self.data_dir, AccountsSettings(data_dir=self.data_dir))
        return self._accounts

    def new_key(self, account: str, tier: str) -> str:
        return self.accounts().create_key(account, tier).token

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._accounts is not None:
            self._accounts.close()
            self._accounts = None
        return int(self.proc.returncode)


def start_server(
    data_dir: Path,
    cache_dir: Path,
    *extra: str,
    port: int | None = None,
    timeout: float = 180,
    env: dict[str, str] | None = None,
) -> Server:
    """`embedding2 serve` on 127.0.0.1, returned once GET /ready answers 200 (``env``: extra
    ``EMBEDDING2_*`` settings; those of the test process itself are not passed on)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = data_dir.parent / f"{data_dir.name}-server-{port}.log"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EMBEDDING2_")}, **(env or {})}
    cmd = [
        sys.executable, "-m", "embedding2.cli", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
        "--cache-dir", str(cache_dir), "--log-level", "warning", *extra,
    ]  # fmt: skip
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server not ready in {timeout} s:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.2)
    match = _KEY_LINE.search(log_path.read_text(errors="replace"))
    return Server(proc, port, data_dir, log_path, match.group(1) if match else None)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Server]:
    """One authenticated server for the session's service tests."""
    srv = start_server(tmp_path_factory.mktemp("svc") / "data", cache_dir)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def admin_key(server: Server) -> str:
    assert server.admin_key, server.log()
    return server.admin_key
