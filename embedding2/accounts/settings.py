"""Settings of the accounts layer: tiers, price, master key, ledger group commit, store location.

Every field is settable by an ``EMBEDDING2_<FIELD>`` environment variable (``tier_limits`` as JSON,
e.g. ``EMBEDDING2_TIER_LIMITS='{"V0": 50, "V1": 100}'``) or passed to the constructor. Nothing is read
at import time.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TIER_LIMITS: dict[str, int] = {"V0": 50, "V1": 100, "V2": 300, "V3": 500}


def default_data_dir() -> Path:
    """Where accounts, keys and the ledger live unless told otherwise (``platformdirs.user_data_dir``)."""
    return Path(user_data_dir("embedding2"))


class AccountsSettings(BaseSettings):
    """Settings of accounts, keys, limits, quotas and the usage ledger."""

    model_config = SettingsConfigDict(env_prefix="EMBEDDING2_", extra="ignore")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="holds embedding2.db (SQLite: accounts, keys, ledger) and master.key",
    )
    tier_limits: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_TIER_LIMITS),
        description="tier -> concurrent in-flight requests per account",
    )
    default_tier: str = Field("V0", description="tier of accounts created without one")
    price_per_million_tokens: Decimal = Field(Decimal("0.5"), description="yuan per million tokens billed")
    master_key: SecretStr | None = Field(
        None,
        description="urlsafe-base64 32-byte key sealing API secrets at rest; default: <data_dir>/master.key (0600)",
    )
    database_url: SecretStr | None = Field(
        None,
        description="store: default sqlite:///<data_dir>/embedding2.db; or postgresql://user:pass@host/db (psycopg 3)",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL",
        description="FULL: a committed usage row survives power loss; NORMAL (WAL): survives a process kill only",
    )
    ledger_commit_interval_ms: float = Field(
        0.0,
        description="extra wait after the first queued usage row before a COMMIT; 0 = none: rows that arrive "
        "while one COMMIT runs form the next group (measured here: 5000 concurrent rows in 6 commits)",
    )
    ledger_max_batch: int = Field(1024, description="at most this many usage rows per COMMIT")
    auth_cache_ttl_s: float = Field(
        5.0, description="decrypted keys and account state are re-read after this long (revocations, top-ups)"
    )
    busy_timeout_ms: int = Field(10000, description="how long SQLite waits for another process's write lock")

    @field_validator("tier_limits")
    @classmethod
    def _positive_limits(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            raise ValueError("tier_limits must name at least one tier")
        for tier, limit in value.items():
            if limit < 1:
                raise ValueError(f"tier {tier}: limit must be at least 1")
        return value

    @model_validator(mode="after")
    def _known_default_tier(self) -> AccountsSettings:
        if self.default_tier not in self.tier_limits:
            raise ValueError(f"default_tier {self.default_tier!r} is not one of tier_limits")
        return self

    def cost_nano(self, tokens: int) -> int:
        """Cost of ``tokens`` in nano-yuan (1e-9 yuan), rounded half up to a whole nano-yuan."""
        exact = Decimal(tokens) * self.price_per_million_tokens * 1000  # yuan/1e6 tokens -> nano-yuan/token
        return int(exact.to_integral_value(rounding="ROUND_HALF_UP"))
