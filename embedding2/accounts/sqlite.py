"""The embedded store: one SQLite file (``<data_dir>/embedding2.db``) in WAL mode.

Durability: with ``synchronous=FULL`` (the default) the WAL is fsynced at each COMMIT, so a committed
usage row survives a process kill and a power loss; with ``NORMAL`` it survives a kill of the process
(the WAL is in the OS page cache) but the last commits may be lost on power failure or OS crash. The
ledger writer commits rows in groups, so FULL costs one fsync per group, not per request.

Other processes (the CLI, a second server) may use the same file at the same time: SQLite serialises
the writers and ``busy_timeout`` makes each wait for the other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedding2.accounts.errors import AccountsError
from embedding2.accounts.sql import Cursor, SQLStore

DB_FILE = "embedding2.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tier TEXT NOT NULL,
    created_at REAL NOT NULL,
    balance_nano INTEGER,
    token_quota INTEGER
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    sealed_secret BLOB NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS api_keys_account ON api_keys(account_id);
CREATE TABLE IF NOT EXISTS usage (
    request_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    cost_nano INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_account_time ON usage(account_id, created_at);
CREATE INDEX IF NOT EXISTS usage_time ON usage(created_at);
"""


class SQLiteStore(SQLStore):
    """:class:`~embedding2.accounts.store.Store` on one SQLite file."""

    day_expr = "date(u.created_at, 'unixepoch')"
    integrity_error = sqlite3.IntegrityError

    def __init__(self, path: Path, synchronous: str = "FULL", busy_timeout_ms: int = 10000) -> None:
        super().__init__()
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._conn = self._connect()
        with self._lock:
            self._conn.executescript(SCHEMA)
        self._ledger_conn = self._connect()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout_ms / 1000
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise AccountsError(f"cannot put {self.path} into WAL mode (got {mode})", "500")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @contextmanager
    def _transaction(self, ledger: bool) -> Iterator[Cursor]:
        conn = self._ledger_conn if ledger else self._conn
        raw = conn.cursor()
        raw.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlock later
        try:
            yield Cursor(raw, "?")
            raw.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        finally:
            raw.close()

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def _close(self) -> None:
        self._conn.close()
        self._ledger_conn.close()
