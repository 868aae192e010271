"""Fixtures of the accounts tests: a real SQLite store in a temporary data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from embedding2.accounts import Accounts, AccountsSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EMBEDDING2_MASTER_KEY", "EMBEDDING2_DATA_DIR", "EMBEDDING2_TIER_LIMITS", "EMBEDDING2_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def accounts(data_dir: Path) -> Iterator[Accounts]:
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir, auth_cache_ttl_s=0.2))
    yield acc
    acc.close()
