"""The storage interface of accounts, keys and the usage ledger, and the rows it deals in.

:class:`Store` is what :class:`~embedding2.accounts.manager.Accounts` needs from a database. The
embedded default is :class:`~embedding2.accounts.sqlite.SQLiteStore`; a PostgreSQL store implements
the same protocol (same tables, same transaction boundaries). Money is kept as whole nano-yuan
(1e-9 yuan) integers so that sums are exact; ``None`` for a balance or token quota means unlimited.
Every method is blocking and thread-safe; the async layer calls it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

NANO = Decimal(10) ** 9  # nano-yuan per yuan


def yuan(nano: int) -> Decimal:
    """Whole nano-yuan as exact yuan."""
    return (Decimal(nano) / NANO).normalize()


def nano_yuan(amount: Decimal) -> int:
    """Yuan as whole nano-yuan (rounded half up)."""
    return int((amount * NANO).to_integral_value(rounding="ROUND_HALF_UP"))


@dataclass(frozen=True)
class AccountRow:
    id: str
    name: str
    tier: str
    created_at: float
    balance_nano: int | None = None  # prepaid balance left; None = not metered by balance
    token_quota: int | None = None  # tokens left; None = not metered by tokens


@dataclass(frozen=True)
class KeyRow:
    id: str
    account_id: str
    sealed_secret: bytes = field(repr=False)
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True)
class UsageRow:
    request_id: str
    account_id: str
    key_id: str
    model: str
    tokens: int
    cost_nano: int
    created_at: float


@dataclass(frozen=True)
class UsageSummary:
    """One account's usage on one UTC day."""

    account_id: str
    account_name: str
    day: str  # YYYY-MM-DD, UTC
    requests: int
    tokens: int
    cost_nano: int


@dataclass(frozen=True)
class Remaining:
    """An account's balance and token quota right after a ledger commit."""

    balance_nano: int | None
    token_quota: int | None


class Store(Protocol):
    """Accounts, keys, metadata and the usage ledger. Every method runs and commits its own transaction."""

    # accounts
    def create_account(self, account: AccountRow) -> None:
        """Insert; raises AccountsError if the name is taken."""

    def get_account(self, account_id: str) -> AccountRow | None: ...

    def find_account(self, name: str) -> AccountRow | None: ...

    def list_accounts(self) -> list[AccountRow]: ...

    def count_accounts(self) -> int: ...

    def set_tier(self, account_id: str, tier: str) -> None: ...

    def set_balance(self, account_id: str, balance_nano: int | None, add: bool = False) -> AccountRow:
        """Set (or with ``add``, increase) the balance; ``None`` removes balance metering."""

    def set_token_quota(self, account_id: str, tokens: int | None, add: bool = False) -> AccountRow:
        """Set (or with ``add``, increase) the token quota; ``None`` removes token metering."""

    # keys
    def create_key(self, key: KeyRow) -> None: ...

    def get_key(self, key_id: str) -> KeyRow | None: ...

    def list_keys(self, account_id: str | None = None) -> list[KeyRow]: ...

    def revoke_key(self, key_id: str, when: float) -> bool:
        """Mark revoked; False if no such key or already revoked."""

    # metadata
    def get_meta(self, name: str) -> bytes | None: ...

    def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        """Store ``value`` under ``name`` unless present; return what is stored now."""

    # ledger
    def record_usage(self, rows: Sequence[UsageRow]) -> tuple[list[bool], dict[str, Remaining]]:
        """Insert the rows in ONE durable transaction (a request_id already present is skipped) and charge
        each inserted row's tokens and cost to its account. Returns which rows were new, and the balance
        and quota left of each account charged."""

    def usage_summary(self, account_id: str | None = None, since: float | None = None) -> list[UsageSummary]:
        """Requests, tokens and cost per account and UTC day, at or after unix time ``since``."""

    def close(self) -> None: ...
