"""Reading an ``Authorization`` header: API keys ``<id>.<secret>`` and the SDKs' HS256 JWTs.

Four forms are accepted: ``Bearer <key>``, bare ``<key>``, ``Bearer <jwt>`` and bare ``<jwt>``. The JWT
is the one the zhipuai / zai SDKs build: header ``{"alg": "HS256", "sign_type": "SIGN"}``, payload
``{"api_key": "<id>", "exp": <ms>, "timestamp": <ms>}``, signed with the key's secret. ``exp`` is in
milliseconds, so PyJWT's own (seconds) expiry check is off and expiry is checked here; a value below
1e11 is read as seconds (a millisecond value that small would lie in 1973), for gateways that send
standard JWTs. This module knows nothing of storage: the caller looks the key id up and passes the
secret in. Nothing here puts a key, secret or token into a message or repr.
"""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from embedding2.accounts.errors import EXPIRED_TOKEN, MALFORMED_TOKEN, MISSING_AUTH, UNKNOWN_KEY, AuthError

_SECONDS_BELOW = 10**11  # an ``exp`` under this is in seconds, not milliseconds
_WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Credential:
    """What the header presents: a key id, plus either the key's secret or a JWT signed with it."""

    key_id: str
    secret: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    expires_ms: int | None = None  # JWT only

    @property
    def is_jwt(self) -> bool:
        return self.token is not None


def credential_text(value: str | None) -> str:
    """The credential in an ``Authorization`` value, ``Bearer`` scheme removed; 1001 if there is none."""
    if value is None or not value.strip():
        raise AuthError("missing Authorization header", MISSING_AUTH)
    text = value.strip()
    scheme, _, rest = text.partition(" ")
    if scheme.lower() == "bearer":
        text = rest.strip()
    elif text.lower() == "bearer":
        text = ""
    if not text:
        raise AuthError("empty credentials in Authorization header", MISSING_AUTH)
    return text


def parse_credential(text: str) -> Credential:
    """An API key ``<id>.<secret>`` or a JWT as a :class:`Credential`; 1002 if it is neither."""
    parts = text.split(".")
    if len(parts) == 2:
        key_id, secret = parts
        if not key_id or not secret or not text.isascii() or _WHITESPACE.search(text):
            raise AuthError("malformed API key: expected <id>.<secret>", MALFORMED_TOKEN)
        return Credential(key_id=key_id, secret=secret)
    if len(parts) == 3:
        return _parse_jwt(text)
    raise AuthError("malformed credentials: expected an API key <id>.<secret> or a JWT", MALFORMED_TOKEN)


def parse_authorization(value: str | None) -> Credential:
    """Split the header into a :class:`Credential`; 1001 if absent, 1002 if neither a key nor a JWT."""
    return parse_credential(credential_text(value))


def _parse_jwt(token: str) -> Credential:
    try:
        unverified = jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthError("malformed JWT", MALFORMED_TOKEN) from exc
    header: dict[str, Any] = unverified["header"]
    payload: Any = unverified["payload"]
    if header.get("alg") != "HS256":
        raise AuthError("malformed JWT: alg must be HS256", MALFORMED_TOKEN)
    if not isinstance(payload, dict):
        raise AuthError("malformed JWT: payload is not an object", MALFORMED_TOKEN)
    key_id = payload.get("api_key")
    exp = payload.get("exp")
    if not isinstance(key_id, str) or not key_id:
        raise AuthError("malformed JWT: no api_key claim", MALFORMED_TOKEN)
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise AuthError("malformed JWT: exp claim missing or not a number", MALFORMED_TOKEN)
    expires_ms = int(exp * 1000) if exp < _SECONDS_BELOW else int(exp)
    return Credential(key_id=key_id, token=token, expires_ms=expires_ms)


def verify(credential: Credential, secret: str, now_ms: int | None = None) -> None:
    """Check the credential against the key's stored ``secret``: 1000 on a mismatch, 1003 if expired."""
    if credential.token is None:
        presented = (credential.secret or "").encode("utf-8")
        if not hmac.compare_digest(presented, secret.encode("utf-8")):
            raise AuthError("invalid API key", UNKNOWN_KEY)
        return
    try:
        jwt.decode(
            credential.token,
            secret,
            algorithms=["HS256"],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise AuthError("invalid JWT signature", UNKNOWN_KEY) from exc
    except jwt.PyJWTError as exc:
        raise AuthError("malformed JWT", MALFORMED_TOKEN) from exc
    if credential.expires_ms is not None:
        check_expiry(credential.expires_ms, now_ms)


def check_expiry(expires_ms: int, now_ms: int | None = None) -> None:
    """1003 if ``expires_ms`` (unix milliseconds) has passed."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if expires_ms <= now:
        raise AuthError("token expired", EXPIRED_TOKEN)


def make_jwt(api_key: str, ttl_s: float = 210.0, now_ms: int | None = None) -> str:
    """A JWT for ``api_key`` (``<id>.<secret>``) exactly as the zhipuai / zai SDKs build it."""
    key_id, secret = api_key.split(".")
    now = round(time.time() * 1000) if now_ms is None else now_ms
    payload = {"api_key": key_id, "exp": now + int(ttl_s * 1000), "timestamp": now}
    return jwt.encode(payload, secret, algorithm="HS256", headers={"alg": "HS256", "sign_type": "SIGN"})
