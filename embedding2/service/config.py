"""Settings of the HTTP service: where it listens, its data directory and every limit on requests.

The engine's settings (model, cache dir, threads, batching) live in :class:`embedding2.settings.Settings`
and the accounts layer's in :class:`embedding2.accounts.AccountsSettings`; this object holds only what
the HTTP layer itself decides. Every field is settable by an ``EMBEDDING2_<FIELD>`` environment
variable and by the ``embedding2 serve`` flag of the same name; nothing is read at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from platformdirs import user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(user_data_dir("embedding2"))


class ServiceSettings(BaseSettings):
    """What ``embedding2 serve`` listens on and the limits it puts on each request."""

    model_config = SettingsConfigDict(env_prefix="EMBEDDING2_", extra="ignore")

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 for every interface)")
    port: int = Field(8000, description="TCP port to listen on")
    data_dir: Path = Field(
        default_factory=default_data_dir, description="accounts, keys, usage ledger and the master key"
    )
    no_auth: bool = Field(
        False,
        description="serve without API keys: every request acts as the built-in local account "
        "(still limited and ledgered). Only for a machine you alone can reach",
    )
    max_body_bytes: int = Field(2 * 1024 * 1024, description="largest request body accepted (else 400/1210)")
    max_items: int = Field(2048, description="most strings in one request's input list (else 400/1214)")
    chars_per_token_bound: int = Field(
        64,
        description="an item longer than its token limit times this many characters is refused with 1261 "
        "before tokenizing (no real text has tokens this long on average)",
    )
    ready_cache_s: float = Field(1.5, description="GET /ready reuses its last probe for this long")
    ready_timeout_s: float = Field(10.0, description="a readiness probe slower than this answers 503")
    graceful_timeout_s: float = Field(30.0, description="on SIGTERM/SIGINT, wait this long for in-flight requests")
    retry_after_ms: int = Field(
        250, description="Retry-After (ms) sent with 429/1302 and 429/1305, which clients may retry"
    )
    engine_nice: int = Field(
        19,
        ge=0,
        le=19,
        description="nice increment of the engine's inference threads (Linux: per thread), so that under full "
        "load the event loop still admits, refuses (429) and answers at once; 0 = same priority. Nice is "
        "relative to the process's own cgroup or session, so it does not yield to other services",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="log level")
    access_log: bool = Field(False, description="log one line per request (costs throughput)")
    backlog: int = Field(4096, description="listen backlog: connections waiting to be accepted")
    keep_alive_s: float = Field(15.0, description="idle keep-alive connections are closed after this long")


def load_service_settings(**overrides: Any) -> ServiceSettings:
    """Defaults < ``EMBEDDING2_*`` environment < explicit overrides (``None`` values are ignored)."""
    return ServiceSettings(**{k: v for k, v in overrides.items() if v is not None})
