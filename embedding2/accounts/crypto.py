"""API-key secrets sealed at rest: the server master key and AES-256-GCM around each secret.

A JWT check needs the key's secret itself (HMAC), so the store cannot keep a hash only. Each secret is
sealed with AES-256-GCM under the master key, with the key id as associated data (a sealed secret
copied onto another key id fails to open). The master key comes from ``EMBEDDING2_MASTER_KEY``
(urlsafe base64 of 32 bytes) or from ``<data_dir>/master.key``, created on first use with mode 0600.
Back that file up with the database: without it the stored keys cannot be checked.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from embedding2.accounts.errors import MasterKeyError

log = logging.getLogger(__name__)

MASTER_KEY_FILE = "master.key"
_NONCE = 12
_VERSION = b"\x01"


def generate_master_key() -> str:
    """A new master key as text (urlsafe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def _decode_master_key(text: str, origin: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MasterKeyError(f"master key from {origin} is not urlsafe base64") from exc
    if len(raw) != 32:
        raise MasterKeyError(f"master key from {origin} must decode to 32 bytes, not {len(raw)}")
    return raw


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` atomically, mode 0600; no-op if another process got there first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(generate_master_key() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # the first writer wins
            os.link(tmp, path)  # atomic, and fails if the file exists
    finally:
        tmp.unlink(missing_ok=True)


def load_master_key(data_dir: Path, env_value: str | None) -> bytes:
    """The master key: ``env_value`` if given, else ``<data_dir>/master.key`` (created on first use)."""
    if env_value:
        return _decode_master_key(env_value, "EMBEDDING2_MASTER_KEY")
    path = data_dir / MASTER_KEY_FILE
    if not path.exists():
        _create_key_file(path)
        log.info("created master key file %s (mode 0600); back it up with the database", path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("master key file %s is readable by others (mode %o); run chmod 600", path, mode)
    return _decode_master_key(path.read_text(encoding="ascii"), str(path))


class SecretBox:
    """Seals and opens API-key secrets under the master key. Its repr shows nothing of the key."""

    __slots__ = ("_aead",)

    def __init__(self, master_key: bytes) -> None:
        self._aead = AESGCM(master_key)

    def __repr__(self) -> str:
        return "SecretBox(<master key hidden>)"

    def seal(self, key_id: str, secret: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, secret.encode("utf-8"), key_id.encode("utf-8"))

    def open(self, key_id: str, sealed: bytes) -> str:
        """The secret sealed for ``key_id``; :class:`MasterKeyError` if the master key does not fit."""
        if len(sealed) < 1 + _NONCE + 16 or sealed[:1] != _VERSION:
            raise MasterKeyError(f"sealed secret of key {key_id} is corrupt")
        nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        try:
            return self._aead.decrypt(nonce, body, key_id.encode("utf-8")).decode("utf-8")
        except InvalidTag as exc:
            raise MasterKeyError(f"cannot open the secret of key {key_id}: wrong master key for this store") from exc
