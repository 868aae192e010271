"""The PostgreSQL store (psycopg 3), for deployments that outgrow one SQLite file or one machine.

Selected by ``EMBEDDING2_DATABASE_URL=postgresql://user@host/db``; install the ``postgres`` extra
(``pip install 'embedding2[postgres]'``). Same tables and transactions as the SQLite store. A usage
row is durable when its COMMIT returns as long as the server runs with ``synchronous_commit = on``
(PostgreSQL's default). Several server processes may share one database; note that the in-flight
limiter is still per process (see :mod:`embedding2.accounts.limiter`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from embedding2.accounts.sql import Cursor, SQLStore, iter_statements

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tier TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    balance_nano BIGINT,
    token_quota BIGINT
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    sealed_secret BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS api_keys_account ON api_keys(account_id);
CREATE TABLE IF NOT EXISTS usage (
    request_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    tokens BIGINT NOT NULL,
    cost_nano BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_account_time ON usage(account_id, created_at);
CREATE INDEX IF NOT EXISTS usage_time ON usage(created_at);
"""

_SCHEMA_LOCK = 0x656D6232  # advisory lock id: one process creates the schema at a time


class PostgresStore(SQLStore):
    """:class:`~embedding2.accounts.store.Store` on a PostgreSQL database."""

    day_expr = "to_char(to_timestamp(u.created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    integrity_error = psycopg.IntegrityError

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._conn = self._connect()
        with self._write() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            for statement in iter_statements(SCHEMA):
                cur.execute(statement)
        self._ledger_conn = self._connect()

    def __repr__(self) -> str:
        info = self._conn.info
        return f"PostgresStore(host={info.host!r}, port={info.port}, dbname={info.dbname!r})"  # never the password

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._url, autocommit=True)

    def _connection(self, ledger: bool) -> psycopg.Connection[Any]:
        """The connection, opened again if the server dropped it (a restart, an idle timeout)."""
        conn = self._ledger_conn if ledger else self._conn
        if conn.closed or conn.broken:
            conn = self._connect()
            if ledger:
                self._ledger_conn = conn
            else:
                self._conn = conn
        return conn

    @contextmanager
    def _transaction(self, ledger: bool) -> Iterator[Cursor]:
        conn = self._connection(ledger)
        with conn.transaction(), conn.cursor() as raw:
            yield Cursor(raw, "%s")

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._connection(False).cursor() as raw:
            return Cursor(raw, "%s").execute(sql, params).fetchall()

    def _close(self) -> None:
        self._conn.close()
        if hasattr(self, "_ledger_conn"):
            self._ledger_conn.close()
