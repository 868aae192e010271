"""The accounts facade the HTTP service and the CLI use: who is calling, may they, and what it cost.

Request path (all fast; no I/O except a cache miss): :meth:`Accounts.authenticate` turns an
``Authorization`` header into a :class:`Principal`; :meth:`Accounts.check_quota` refuses a spent
account (1113); :meth:`Accounts.slot` takes one of the account's in-flight slots or refuses at once
(1302); :meth:`Accounts.record` writes the usage row durably (group commit) and charges it.

Decrypted key secrets and account state are cached in memory for ``auth_cache_ttl_s`` seconds, so a
revocation, tier change or top-up made by another process (the CLI) takes effect within that time;
changes made through this object take effect at once. Balances charged by this process's ledger
update the cache as soon as they commit.

Management (the CLI): accounts, tiers, quotas, balances, keys and the usage report.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

from embedding2.accounts.credentials import check_expiry, credential_text, parse_credential, verify
from embedding2.accounts.crypto import MASTER_KEY_FILE, SecretBox, load_master_key
from embedding2.accounts.errors import UNKNOWN_KEY, AccountsError, AuthError, MasterKeyError, QuotaError
from embedding2.accounts.ledger import Ledger
from embedding2.accounts.limiter import InProcessLimiter, Limiter, Slot
from embedding2.accounts.settings import AccountsSettings
from embedding2.accounts.sqlite import DB_FILE, SQLiteStore
from embedding2.accounts.store import AccountRow, KeyRow, Remaining, Store, UsageRow, UsageSummary, nano_yuan

log = logging.getLogger(__name__)

ADMIN_ACCOUNT = "admin"
DEFAULT_ACCOUNT = "default"
_CANARY_NAME = "master_key_check"
_CANARY_ID = "__master_key_check__"
_CANARY_TEXT = "embedding2 master key check"
_VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Principal:
    """The authenticated caller. Holds no secret."""

    account_id: str
    account_name: str
    key_id: str
    tier: str
    concurrency: int


@dataclass
class UsageRecord:
    """One successful request, as the service reports it; the ledger adds the cost."""

    request_id: str
    account_id: str
    key_id: str
    model: str
    tokens: int
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class NewKey:
    """A key just created: ``token`` (``<id>.<secret>``) is shown once and never stored in clear."""

    key_id: str
    account_id: str
    account_name: str
    tier: str
    created_at: float
    token: str = field(repr=False)


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: never its secret."""

    key_id: str
    account_id: str
    account_name: str
    created_at: float
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class _CachedKey:
    account_id: str
    secret: str = field(repr=False)
    revoked: bool


def open_store(data_dir: Path, settings: AccountsSettings) -> Store:
    """The store ``settings.database_url`` names: default SQLite ``<data_dir>/embedding2.db``;
    ``sqlite:///PATH``; or ``postgresql://...`` (needs the ``postgres`` extra: psycopg 3)."""
    url = settings.database_url.get_secret_value() if settings.database_url else None  # may hold a password
    if url is None or url.startswith("sqlite:///"):
        path = data_dir / DB_FILE if url is None else Path(url.removeprefix("sqlite:///"))
        return SQLiteStore(path, synchronous=settings.sqlite_synchronous, busy_timeout_ms=settings.busy_timeout_ms)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from embedding2.accounts.postgres import PostgresStore
        except ImportError as exc:
            raise AccountsError(
                "a postgresql:// database_url needs psycopg: pip install 'embedding2[postgres]'"
            ) from exc
        return PostgresStore(url)
    raise AccountsError(f"unsupported database_url scheme {url.split(':', 1)[0]!r}: use sqlite:/// or postgresql://")


class Accounts:
    """Accounts, keys, limits, quotas and the usage ledger behind one object (thread-safe)."""

    def __init__(
        self,
        store: Store,
        settings: AccountsSettings,
        data_dir: Path,
        limiter: Limiter | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.data_dir = data_dir
        self.limiter: Limiter = limiter or InProcessLimiter()
        self.ledger = Ledger(
            store,
            commit_interval_s=settings.ledger_commit_interval_ms / 1000,
            max_batch=settings.ledger_max_batch,
            on_commit=self._charged,
        )
        self._lock = threading.Lock()
        self._box: SecretBox | None = None
        self._keys: dict[str, tuple[float, _CachedKey | None]] = {}
        self._accounts: dict[str, tuple[float, AccountRow]] = {}
        # credentials verified before -> (key id, JWT expiry in ms or None): the SDKs send the same key,
        # or reuse one JWT for minutes, so most requests skip parsing and the signature check
        self._verified: dict[str, tuple[str, int | None]] = {}

    @classmethod
    def open(cls, data_dir: Path, settings: AccountsSettings | None = None) -> Accounts:
        """Open (creating if needed) the accounts store under ``data_dir``."""
        settings = settings or AccountsSettings(data_dir=data_dir)
        data_dir = Path(data_dir)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(open_store(data_dir, settings), settings, data_dir)

    def __repr__(self) -> str:
        return f"Accounts({self.store!r})"

    def __enter__(self) -> Accounts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Commit the queued usage rows, then close the store."""
        self.ledger.close()
        self.store.close()

    # ------------------------------------------------------------------ request path
    def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind an ``Authorization`` header value; :class:`AuthError` 1000/1001/1002/1003."""
        text = credential_text(authorization)
        seen = self._verified.get(text)
        if seen is not None:
            key_id, expires_ms = seen
            cached = self._key(key_id)  # re-read every auth_cache_ttl_s: revocations take effect
            if cached is None or cached.revoked:
                raise AuthError("invalid API key", UNKNOWN_KEY)
            if expires_ms is not None:
                check_expiry(expires_ms)
        else:
            credential = parse_credential(text)
            key_id = credential.key_id
            cached = self._key(key_id)
            if cached is None or cached.revoked:
                raise AuthError("invalid API key", UNKNOWN_KEY)
            verify(credential, cached.secret)
            with self._lock:
                if len(self._verified) >= _VERIFIED_CACHE_SIZE:
                    self._verified.clear()
                self._verified[text] = (key_id, credential.expires_ms)
        account = self._account(cached.account_id)
        if account is None:
            raise AuthError("invalid API key", UNKNOWN_KEY)
        return Principal(
            account_id=account.id,
            account_name=account.name,
            key_id=key_id,
            tier=account.tier,
            concurrency=self.tier_limit(account.tier),
        )

    def check_quota(self, principal: Principal) -> None:
        """Raise :class:`QuotaError` (1113) if the account's balance or token quota is spent.

        Checked before serving and charged when the usage row commits, so requests already in flight when
        the money runs out may overdraw the account by their own cost (at most the tier's concurrency)."""
        account = self._account(principal.account_id)
        if account is None:
            raise AuthError("invalid API key", UNKNOWN_KEY)
        if account.balance_nano is not None and account.balance_nano <= 0:
            raise QuotaError("account balance exhausted; top up to continue")
        if account.token_quota is not None and account.token_quota <= 0:
            raise QuotaError("account token quota exhausted")

    def slot(self, principal: Principal) -> Slot:
        """One in-flight slot of the account, or :class:`LimitError` (1302) at once."""
        return Slot.acquire(self.limiter, principal.account_id, principal.concurrency)

    def try_slot(self, principal: Principal) -> Slot | None:
        """One in-flight slot of the account, or ``None`` at once if all are taken."""
        if not self.limiter.try_acquire(principal.account_id, principal.concurrency):
            return None
        return Slot(self.limiter, principal.account_id)

    def in_flight(self, account_id: str) -> int:
        return self.limiter.in_flight(account_id)

    def tier_limit(self, tier: str) -> int:
        limits = self.settings.tier_limits
        return limits.get(tier, limits.get(self.settings.default_tier, min(limits.values())))

    def _row(self, usage: UsageRecord) -> UsageRow:
        if usage.tokens < 0:
            raise ValueError("tokens must be >= 0")
        return UsageRow(
            request_id=usage.request_id,
            account_id=usage.account_id,
            key_id=usage.key_id,
            model=usage.model,
            tokens=usage.tokens,
            cost_nano=self.settings.cost_nano(usage.tokens),
            created_at=usage.created_at,
        )

    async def record(self, usage: UsageRecord) -> None:
        """Write the usage row and charge the account; returns once COMMITTED. Idempotent per request_id."""
        await self.ledger.record(self._row(usage))

    def record_sync(self, usage: UsageRecord) -> None:
        """:meth:`record` for threads: blocks until the row is committed."""
        self.ledger.record_sync(self._row(usage))

    # ------------------------------------------------------------------ caches
    def _key(self, key_id: str) -> _CachedKey | None:
        """The key, from the cache or the store; an unknown id is remembered too (for the same TTL), so
        that a flood of made-up keys costs one store query per id, not one per request."""
        now = time.monotonic()
        hit = self._keys.get(key_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = self.store.get_key(key_id)
        if row is None:
            with self._lock:
                if len(self._keys) > 100_000:
                    self._keys.clear()
                self._keys[key_id] = (now + self.settings.auth_cache_ttl_s, None)
            return None
        cached = _CachedKey(
            row.account_id, self._secret_box().open(row.id, row.sealed_secret), row.revoked_at is not None
        )
        with self._lock:
            if len(self._keys) > 100_000:
                self._keys.clear()
            self._keys[key_id] = (now + self.settings.auth_cache_ttl_s, cached)
        return cached

    def _account(self, account_id: str) -> AccountRow | None:
        now = time.monotonic()
        hit = self._accounts.get(account_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = self.store.get_account(account_id)
        if row is not None:
            with self._lock:
                self._accounts[account_id] = (now + self.settings.auth_cache_ttl_s, row)
        return row

    def _charged(self, remaining: dict[str, Remaining]) -> None:
        """Ledger callback: balances after a commit, so check_quota sees this process's spending at once."""
        with self._lock:
            for account_id, left in remaining.items():
                hit = self._accounts.get(account_id)
                if hit is not None:
                    row = dataclasses.replace(hit[1], balance_nano=left.balance_nano, token_quota=left.token_quota)
                    self._accounts[account_id] = (hit[0], row)

    def _forget_account(self, account_id: str) -> None:
        with self._lock:
            self._accounts.pop(account_id, None)

    def _secret_box(self) -> SecretBox:
        if self._box is not None:
            return self._box
        with self._lock:
            if self._box is None:
                self._box = self._load_box()
            return self._box

    def _load_box(self) -> SecretBox:
        env = self.settings.master_key.get_secret_value() if self.settings.master_key else None
        if not env and self.store.get_meta(_CANARY_NAME) is not None and not (self.data_dir / MASTER_KEY_FILE).exists():
            raise MasterKeyError(
                f"this store's keys are sealed with a master key that is not here: set EMBEDDING2_MASTER_KEY "
                f"or restore {self.data_dir / MASTER_KEY_FILE}"
            )
        box = SecretBox(load_master_key(self.data_dir, env))
        stored = self.store.put_meta_if_absent(_CANARY_NAME, box.seal(_CANARY_ID, _CANARY_TEXT))
        if box.open(_CANARY_ID, stored) != _CANARY_TEXT:
            raise MasterKeyError("master key check failed")
        return box

    # ------------------------------------------------------------------ management
    def _check_tier(self, tier: str) -> str:
        if tier not in self.settings.tier_limits:
            raise AccountsError(f"unknown tier {tier!r}; tiers: {', '.join(self.settings.tier_limits)}")
        return tier

    def get_account(self, name: str) -> AccountRow:
        row = self.store.find_account(name)
        if row is None:
            raise AccountsError(f"no account named {name!r}")
        return row

    def create_account(self, name: str, tier: str | None = None) -> AccountRow:
        if not name or not name.strip():
            raise AccountsError("account name must not be empty")
        row = AccountRow(
            id=secrets.token_hex(8),
            name=name,
            tier=self._check_tier(tier or self.settings.default_tier),
            created_at=time.time(),
        )
        self.store.create_account(row)
        return row

    def ensure_account(self, name: str, tier: str | None = None) -> AccountRow:
        """The account ``name``, created if missing; ``tier``, if given, is applied to it."""
        row = self.store.find_account(name)
        if row is None:
            try:
                return self.create_account(name, tier)
            except AccountsError:
                row = self.store.find_account(name)  # created meanwhile by another process
                if row is None:
                    raise
        if tier is not None and tier != row.tier:
            return self.set_tier(name, tier)
        return row

    def list_accounts(self) -> list[AccountRow]:
        return self.store.list_accounts()

    def set_tier(self, name: str, tier: str) -> AccountRow:
        row = self.get_account(name)
        self.store.set_tier(row.id, self._check_tier(tier))
        self._forget_account(row.id)
        return dataclasses.replace(row, tier=tier)

    def set_balance(self, name: str, amount_yuan: Decimal | None, add: bool = False) -> AccountRow:
        """Set (or add to) the prepaid balance in yuan; ``None`` = unmetered."""
        row = self.get_account(name)
        new = self.store.set_balance(row.id, None if amount_yuan is None else nano_yuan(amount_yuan), add=add)
        self._forget_account(row.id)
        return new

    def set_token_quota(self, name: str, tokens: int | None, add: bool = False) -> AccountRow:
        """Set (or add to) the tokens left; ``None`` = unmetered."""
        row = self.get_account(name)
        new = self.store.set_token_quota(row.id, tokens, add=add)
        self._forget_account(row.id)
        return new

    def create_key(self, account_name: str = DEFAULT_ACCOUNT, tier: str | None = None) -> NewKey:
        """A new key ``<id>.<secret>`` for the account (created if missing; ``tier`` applied to it)."""
        account = self.ensure_account(account_name, tier)
        box = self._secret_box()
        key_id = secrets.token_hex(16)
        secret = secrets.token_urlsafe(32)  # 43 chars of [A-Za-z0-9_-]: no '.', 256 bits
        created = time.time()
        self.store.create_key(KeyRow(key_id, account.id, box.seal(key_id, secret), created))
        return NewKey(key_id, account.id, account.name, account.tier, created, f"{key_id}.{secret}")

    def list_keys(self, account_name: str | None = None) -> list[KeyInfo]:
        names = {a.id: a.name for a in self.store.list_accounts()}
        account_id = self.get_account(account_name).id if account_name else None
        return [
            KeyInfo(k.id, k.account_id, names.get(k.account_id, "?"), k.created_at, k.revoked_at)
            for k in self.store.list_keys(account_id)
        ]

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key by id (the part before the dot); takes effect here at once, elsewhere within the TTL."""
        key_id = key_id.split(".", 1)[0]  # tolerate a whole key being pasted, never echo its secret
        if self.store.get_key(key_id) is None:
            raise AccountsError(f"no key with id {key_id!r}")
        self.store.revoke_key(key_id, time.time())
        with self._lock:
            self._keys.pop(key_id, None)

    def usage(self, account_name: str | None = None, since: date | None = None) -> list[UsageSummary]:
        """Requests, tokens and cost per account and UTC day."""
        account_id = self.get_account(account_name).id if account_name else None
        since_ts = datetime(since.year, since.month, since.day, tzinfo=timezone.utc).timestamp() if since else None
        return self.store.usage_summary(account_id, since_ts)

    def ensure_admin(self) -> str | None:
        """On an empty store, create account ``admin`` (tier V3, or the highest) and a key; return the key
        once. Otherwise None."""
        if self.store.count_accounts() > 0:
            return None
        limits = self.settings.tier_limits
        tier = "V3" if "V3" in limits else max(limits, key=lambda t: limits[t])
        try:
            self.create_account(ADMIN_ACCOUNT, tier)
        except AccountsError:
            return None  # another process got there first
        return self.create_key(ADMIN_ACCOUNT).token
