"""Accounts: API keys and JWTs, tiers and in-flight limits, quotas and the durable usage ledger.

manager     Accounts (the facade), Principal, UsageRecord, NewKey, KeyInfo
credentials Authorization header -> key id + secret or JWT; verification; make_jwt
crypto      master key (env or 0600 file) and AES-GCM sealing of key secrets at rest
limiter     per-account in-flight slots (in-process; interface ready for a shared one)
ledger      group-commit writer of usage rows
store       the storage protocol and rows; sqlite: the embedded SQLite (WAL) store
settings    AccountsSettings (EMBEDDING2_* environment variables)
cli         `embedding2 keys | accounts | usage`
"""

from embedding2.accounts.errors import AccountsError, AuthError, LimitError, MasterKeyError, QuotaError
from embedding2.accounts.ledger import LedgerError
from embedding2.accounts.limiter import InProcessLimiter, Limiter, Slot
from embedding2.accounts.manager import Accounts, KeyInfo, NewKey, Principal, UsageRecord
from embedding2.accounts.settings import AccountsSettings, default_data_dir
from embedding2.accounts.store import Store, UsageSummary

__all__ = [
    "Accounts",
    "AccountsError",
    "AccountsSettings",
    "AuthError",
    "InProcessLimiter",
    "KeyInfo",
    "LedgerError",
    "LimitError",
    "Limiter",
    "MasterKeyError",
    "NewKey",
    "Principal",
    "QuotaError",
    "Slot",
    "Store",
    "UsageRecord",
    "UsageSummary",
    "default_data_dir",
]
