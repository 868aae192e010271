"""The errors of the accounts layer, each carrying its contract code (see ``embedding2.errors``).

    Embedding2Error
     +-- AuthError     401: missing header (1001), unknown/revoked key or bad signature (1000),
     |                 malformed token (1002), expired token (1003)
     +-- QuotaError    429/1113: the account's prepaid balance or token quota is spent
     +-- LimitError    429/1302: the account's in-flight requests are at its tier's limit
     +-- AccountsError management misuse: unknown account or key, invalid tier or amount (1214)
          +-- MasterKeyError  the master key cannot decrypt this store's secrets (500)

Messages never contain a key, a secret or a token: only key ids, which are not secret.
"""

from __future__ import annotations

from embedding2.errors import INTERNAL, INVALID_FIELD, Embedding2Error

UNKNOWN_KEY = "1000"
MISSING_AUTH = "1001"
MALFORMED_TOKEN = "1002"
EXPIRED_TOKEN = "1003"
QUOTA_EXHAUSTED = "1113"
CONCURRENCY_LIMIT = "1302"


class AuthError(Embedding2Error):
    """The request carries no valid credentials (HTTP 401)."""

    code = UNKNOWN_KEY


class QuotaError(Embedding2Error):
    """The account's balance or token quota is spent (HTTP 429, code 1113)."""

    code = QUOTA_EXHAUSTED


class LimitError(Embedding2Error):
    """The account already has as many requests in flight as its tier allows (HTTP 429, code 1302)."""

    code = CONCURRENCY_LIMIT


class AccountsError(Embedding2Error):
    """A management operation was given something invalid: unknown account or key, bad tier or amount."""

    code = INVALID_FIELD


class MasterKeyError(AccountsError):
    """The master key is missing, malformed, or not the one this store's secrets were sealed with."""

    code = INTERNAL
