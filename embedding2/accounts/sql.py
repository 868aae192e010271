"""The SQL both stores share: one implementation of :class:`~embedding2.accounts.store.Store` over any
DB-API connection, written once with ``?`` placeholders; a dialect (SQLite, PostgreSQL) supplies the
connections, the schema, transactions and the few expressions that differ.

Two connections, each behind its own lock: one for reads and management, one for the ledger writer, so
that a ledger COMMIT (an fsync) never holds up an authentication lookup.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from embedding2.accounts.errors import AccountsError
from embedding2.accounts.store import AccountRow, KeyRow, Remaining, UsageRow, UsageSummary

ACCOUNT_COLS = "id, name, tier, created_at, balance_nano, token_quota"
KEY_COLS = "id, account_id, sealed_secret, created_at, revoked_at"
USAGE_COLS = "request_id, account_id, key_id, model, tokens, cost_nano, created_at"


def _account(row: Sequence[Any]) -> AccountRow:
    return AccountRow(row[0], row[1], row[2], float(row[3]), row[4], row[5])


def _key(row: Sequence[Any]) -> KeyRow:
    return KeyRow(row[0], row[1], bytes(row[2]), float(row[3]), None if row[4] is None else float(row[4]))


class Cursor:
    """The part of a DB-API cursor the shared code uses, with ``?`` placeholders on every dialect."""

    def __init__(self, raw: Any, placeholder: str) -> None:
        self._raw = raw
        self._placeholder = placeholder

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        if self._placeholder != "?":
            sql = sql.replace("?", self._placeholder)
        self._raw.execute(sql, tuple(params))
        return self

    @property
    def rowcount(self) -> int:
        return int(self._raw.rowcount)

    def fetchone(self) -> Any:
        return self._raw.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._raw.fetchall())


class SQLStore(ABC):
    """:class:`~embedding2.accounts.store.Store` in SQL; subclasses are the dialects."""

    #: SQL expression of the UTC day (YYYY-MM-DD) of the unix time column ``u.created_at``
    day_expr: str
    #: the driver's exception for a violated unique/foreign key constraint
    integrity_error: type[Exception]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ledger_lock = threading.Lock()

    @abstractmethod
    def _transaction(self, ledger: bool) -> AbstractContextManager[Cursor]:
        """A write transaction on the main (or ledger) connection, committed on exit, rolled back on error.
        Called with that connection's lock held."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Rows of a read-only query on the main connection. Called with its lock held."""

    @abstractmethod
    def _close(self) -> None: ...

    def _write(self, ledger: bool = False) -> _Locked:
        return _Locked(self._ledger_lock if ledger else self._lock, self._transaction(ledger))

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._query(sql, params)

    # accounts
    def create_account(self, account: AccountRow) -> None:
        try:
            with self._write() as cur:
                cur.execute(
                    f"INSERT INTO accounts ({ACCOUNT_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        account.id,
                        account.name,
                        account.tier,
                        account.created_at,
                        account.balance_nano,
                        account.token_quota,
                    ),
                )
        except self.integrity_error as exc:
            raise AccountsError(f"account {account.name!r} already exists") from exc

    def get_account(self, account_id: str) -> AccountRow | None:
        rows = self._read(f"SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?", (account_id,))
        return _account(rows[0]) if rows else None

    def find_account(self, name: str) -> AccountRow | None:
        rows = self._read(f"SELECT {ACCOUNT_COLS} FROM accounts WHERE name = ?", (name,))
        return _account(rows[0]) if rows else None

    def list_accounts(self) -> list[AccountRow]:
        return [_account(r) for r in self._read(f"SELECT {ACCOUNT_COLS} FROM accounts ORDER BY name")]

    def count_accounts(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM accounts")[0][0])

    def set_tier(self, account_id: str, tier: str) -> None:
        with self._write() as cur:
            if cur.execute("UPDATE accounts SET tier = ? WHERE id = ?", (tier, account_id)).rowcount != 1:
                raise AccountsError(f"no account with id {account_id!r}")

    def _set_metered(self, column: str, account_id: str, value: int | None, add: bool) -> AccountRow:
        with self._write() as cur:
            if add:
                if value is None:
                    raise AccountsError("nothing to add")
                sql = f"UPDATE accounts SET {column} = COALESCE({column}, 0) + ? WHERE id = ?"
            else:
                sql = f"UPDATE accounts SET {column} = ? WHERE id = ?"
            if cur.execute(sql, (value, account_id)).rowcount != 1:
                raise AccountsError(f"no account with id {account_id!r}")
            row = cur.execute(f"SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?", (account_id,)).fetchone()
        return _account(row)

    def set_balance(self, account_id: str, balance_nano: int | None, add: bool = False) -> AccountRow:
        return self._set_metered("balance_nano", account_id, balance_nano, add)

    def set_token_quota(self, account_id: str, tokens: int | None, add: bool = False) -> AccountRow:
        return self._set_metered("token_quota", account_id, tokens, add)

    # keys
    def create_key(self, key: KeyRow) -> None:
        try:
            with self._write() as cur:
                cur.execute(
                    f"INSERT INTO api_keys ({KEY_COLS}) VALUES (?, ?, ?, ?, ?)",
                    (key.id, key.account_id, key.sealed_secret, key.created_at, key.revoked_at),
                )
        except self.integrity_error as exc:
            raise AccountsError(f"cannot create key {key.id}: duplicate id or unknown account") from exc

    def get_key(self, key_id: str) -> KeyRow | None:
        rows = self._read(f"SELECT {KEY_COLS} FROM api_keys WHERE id = ?", (key_id,))
        return _key(rows[0]) if rows else None

    def list_keys(self, account_id: str | None = None) -> list[KeyRow]:
        if account_id is None:
            rows = self._read(f"SELECT {KEY_COLS} FROM api_keys ORDER BY created_at, id")
        else:
            rows = self._read(
                f"SELECT {KEY_COLS} FROM api_keys WHERE account_id = ? ORDER BY created_at, id", (account_id,)
            )
        return [_key(r) for r in rows]

    def revoke_key(self, key_id: str, when: float) -> bool:
        with self._write() as cur:
            sql = "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
            return cur.execute(sql, (when, key_id)).rowcount == 1

    # metadata
    def get_meta(self, name: str) -> bytes | None:
        rows = self._read("SELECT value FROM meta WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        with self._write() as cur:
            cur.execute("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", (name, value))
            stored = cur.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0]
        return bytes(stored)

    # ledger
    def record_usage(self, rows: Sequence[UsageRow]) -> tuple[list[bool], dict[str, Remaining]]:
        inserted: list[bool] = []
        charge_tokens: dict[str, int] = defaultdict(int)
        charge_nano: dict[str, int] = defaultdict(int)
        remaining: dict[str, Remaining] = {}
        with self._write(ledger=True) as cur:
            for r in rows:
                new = (
                    cur.execute(
                        f"INSERT INTO usage ({USAGE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (request_id) DO NOTHING",
                        (r.request_id, r.account_id, r.key_id, r.model, r.tokens, r.cost_nano, r.created_at),
                    ).rowcount
                    == 1
                )
                inserted.append(new)
                if new:
                    charge_tokens[r.account_id] += r.tokens
                    charge_nano[r.account_id] += r.cost_nano
            for account_id in sorted(charge_tokens):  # a fixed order: no deadlock between writers
                got = cur.execute(
                    "UPDATE accounts SET balance_nano = balance_nano - ?, token_quota = token_quota - ? "
                    "WHERE id = ? RETURNING balance_nano, token_quota",
                    (charge_nano[account_id], charge_tokens[account_id], account_id),
                ).fetchone()
                if got is not None:
                    remaining[account_id] = Remaining(got[0], got[1])
        return inserted, remaining

    def usage_summary(self, account_id: str | None = None, since: float | None = None) -> list[UsageSummary]:
        where: list[str] = []
        params: list[Any] = []
        if account_id is not None:
            where.append("u.account_id = ?")
            params.append(account_id)
        if since is not None:
            where.append("u.created_at >= ?")
            params.append(since)
        rows = self._read(
            f"SELECT u.account_id, COALESCE(a.name, u.account_id) AS account_name, {self.day_expr} AS day, "
            "COUNT(*), SUM(u.tokens), SUM(u.cost_nano) "
            "FROM usage u LEFT JOIN accounts a ON a.id = u.account_id "
            + (f"WHERE {' AND '.join(where)} " if where else "")
            + "GROUP BY u.account_id, account_name, day ORDER BY account_name, day",
            params,
        )
        return [UsageSummary(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5])) for r in rows]

    def close(self) -> None:
        with self._lock, self._ledger_lock:
            self._close()


class _Locked:
    """Holds a connection's lock for the length of one transaction."""

    def __init__(self, lock: threading.Lock, transaction: AbstractContextManager[Cursor]) -> None:
        self._lock = lock
        self._transaction = transaction

    def __enter__(self) -> Cursor:
        self._lock.acquire()
        try:
            return self._transaction.__enter__()
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc: Any) -> None:
        try:
            self._transaction.__exit__(*exc)
        finally:
            self._lock.release()


def iter_statements(script: str) -> Iterator[str]:
    """The statements of a ``;``-separated schema script (no ``;`` inside statements)."""
    for statement in script.split(";"):
        if statement.strip():
            yield statement.strip()
