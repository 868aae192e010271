"""Keys at rest: creation, listing, revocation, sealed secrets and the master key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from embedding2.accounts import Accounts, AccountsError, AccountsSettings, MasterKeyError
from embedding2.accounts.crypto import MASTER_KEY_FILE, generate_master_key


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_create_list_revoke(accounts: Accounts) -> None:
    k1 = accounts.create_key("alice", "V1")
    k2 = accounts.create_key("alice")  # tier kept
    k3 = accounts.create_key("bob", "V3")
    assert k1.key_id != k2.key_id and k1.token != k2.token
    assert k1.token.count(".") == 1 and k1.token.split(".")[0] == k1.key_id
    assert len(k1.token.split(".")[1]) >= 43  # 256-bit secret, long enough for HS256
    assert accounts.get_account("alice").tier == "V1" and k2.tier == "V1"
    assert accounts.authenticate(k3.token).concurrency == 500

    listed = accounts.list_keys()
    assert [k.key_id for k in listed] == [k1.key_id, k2.key_id, k3.key_id]
    assert [k.account_name for k in listed] == ["alice", "alice", "bob"]
    assert not any(k.revoked for k in listed)
    assert [k.key_id for k in accounts.list_keys("bob")] == [k3.key_id]
    for k in listed:
        assert k1.token.split(".")[1] not in repr(k)

    accounts.revoke_key(k2.key_id)
    assert [k.revoked for k in accounts.list_keys()] == [False, True, False]
    assert accounts.authenticate(k1.token).account_name == "alice"
    with pytest.raises(AccountsError):
        accounts.revoke_key("no-such-key")
    with pytest.raises(AccountsError):
        accounts.list_keys("nobody")


def test_tier_change_applies_to_existing_account(accounts: Accounts) -> None:
    key = accounts.create_key("carol", "V0")
    assert accounts.authenticate(key.token).concurrency == 50
    accounts.create_key("carol", "V2")
    p = accounts.authenticate(key.token)
    assert (p.tier, p.concurrency) == ("V2", 300)
    accounts.set_tier("carol", "V1")
    assert accounts.authenticate(key.token).concurrency == 100
    with pytest.raises(AccountsError):
        accounts.set_tier("carol", "V9")
    with pytest.raises(AccountsError):
        accounts.create_account("carol")


def test_secrets_never_stored_in_clear(data_dir: Path) -> None:
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    keys = [acc.create_key(f"user{i}", "V1") for i in range(5)]
    while_open = _all_bytes(data_dir)  # database, WAL and shared-memory files while in use
    acc.close()
    stored = _all_bytes(data_dir) + while_open
    assert (data_dir / "embedding2.db").is_file()
    for key in keys:
        secret = key.token.split(".")[1]
        assert key.key_id.encode() in stored  # the id is stored (it is not secret) ...
        assert secret.encode() not in stored  # ... the secret is not, in any file
        assert secret.encode("utf-16-le") not in stored
    # and the sealed secrets still open after a restart
    again = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    try:
        assert [again.authenticate(k.token).account_name for k in keys] == [f"user{i}" for i in range(5)]
    finally:
        again.close()


def test_master_key_file_is_private_and_required(data_dir: Path) -> None:
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    key = acc.create_key("u")
    acc.close()
    path = data_dir / MASTER_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = path.read_bytes()

    path.unlink()  # a store whose master key is gone must not silently mint a new one
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    try:
        with pytest.raises(MasterKeyError):
            acc.authenticate(key.token)
        assert not path.exists()
    finally:
        acc.close()

    path.write_text(generate_master_key())  # a different key does not open it either
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    try:
        with pytest.raises(MasterKeyError):
            acc.create_key("v")
    finally:
        acc.close()

    path.write_bytes(saved)
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    try:
        assert acc.authenticate(key.token).account_name == "u"
    finally:
        acc.close()


def test_master_key_from_environment(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    master = generate_master_key()
    monkeypatch.setenv("EMBEDDING2_MASTER_KEY", master)
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    key = acc.create_key("env")
    acc.close()
    assert not (data_dir / MASTER_KEY_FILE).exists()
    assert master.encode() not in _all_bytes(data_dir)
    monkeypatch.setenv("EMBEDDING2_MASTER_KEY", generate_master_key())
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    try:
        with pytest.raises(MasterKeyError):
            acc.authenticate(key.token)
    finally:
        acc.close()
    monkeypatch.setenv("EMBEDDING2_MASTER_KEY", "not base64 of 32 bytes")
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    try:
        with pytest.raises(MasterKeyError):
            acc.authenticate(key.token)
    finally:
        acc.close()
    monkeypatch.setenv("EMBEDDING2_MASTER_KEY", master)
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    try:
        assert acc.authenticate(key.token).account_name == "env"
    finally:
        acc.close()


def test_ensure_admin_once(data_dir: Path) -> None:
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    try:
        token = acc.ensure_admin()
        assert token is not None
        p = acc.authenticate(f"Bearer {token}")
        assert (p.account_name, p.tier, p.concurrency) == ("admin", "V3", 500)
        assert acc.ensure_admin() is None
    finally:
        acc.close()
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir))
    try:
        assert acc.ensure_admin() is None
        assert [k.account_name for k in acc.list_keys()] == ["admin"]
    finally:
        acc.close()


def test_data_dir_is_created_private(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    Accounts.open(target).close()
    assert (target / "embedding2.db").is_file()
    assert stat.S_IMODE(os.stat(target).st_mode) & 0o077 == 0
