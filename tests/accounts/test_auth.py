"""Authentication: the four header forms, the SDKs' own JWTs, and every failure code."""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path

import jwt
import pytest

from embedding2.accounts import Accounts, AccountsSettings, AuthError
from embedding2.accounts.credentials import make_jwt


def _sdk_token_functions() -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    try:
        from zhipuai.core._jwt_token import generate_token as zhipuai_token

        found.append(("zhipuai", zhipuai_token))
    except ImportError:
        pass
    try:
        from zai.core._jwt_token import generate_token as zai_token

        found.append(("zai", zai_token))
    except ImportError:
        pass
    return found


def _code(accounts: Accounts, header: str | None) -> str:
    with pytest.raises(AuthError) as info:
        accounts.authenticate(header)
    assert info.value.http_status == 401
    return info.value.code


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_four_forms_authenticate(accounts: Accounts) -> None:
    key = accounts.create_key("alice", "V2")
    token = make_jwt(key.token)
    for header in (f"Bearer {key.token}", key.token, f"Bearer {token}", token, f"bearer   {key.token}  "):
        p = accounts.authenticate(header)
        assert (p.account_name, p.key_id, p.tier, p.concurrency) == ("alice", key.key_id, "V2", 300)
        assert p.account_id == key.account_id


@pytest.mark.parametrize("sdk", [name for name, _ in _sdk_token_functions()] or ["none"])
def test_sdk_jwt_accepted(accounts: Accounts, sdk: str) -> None:
    functions = dict(_sdk_token_functions())
    if sdk not in functions:
        pytest.skip("neither zhipuai nor zai-sdk is installed")
    key = accounts.create_key("sdk-user", "V1")
    token = functions[sdk](key.token)  # type: ignore[operator]
    header = jwt.get_unverified_header(token)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert header["sign_type"] == "SIGN" and header["alg"] == "HS256"
    assert payload["exp"] > time.time() * 1000  # milliseconds, as the contract says
    for form in (f"Bearer {token}", token):
        assert accounts.authenticate(form).key_id == key.key_id


def test_missing_header_is_1001(accounts: Accounts) -> None:
    for header in (None, "", "   ", "Bearer", "Bearer   "):
        assert _code(accounts, header) == "1001"


def test_unknown_revoked_and_forged_are_1000(accounts: Accounts, data_dir: Path) -> None:
    key = accounts.create_key("bob")
    other = accounts.create_key("carol")
    key_id, secret = key.token.split(".")
    assert _code(accounts, f"Bearer {'0' * 32}.{secret}") == "1000"  # unknown id
    assert _code(accounts, f"Bearer {key_id}.{secret[:-1]}x") == "1000"  # wrong secret
    assert _code(accounts, f"{key_id}.{other.token.split('.')[1]}") == "1000"  # another key's secret
    forged = jwt.encode(
        {"api_key": key_id, "exp": int(time.time() * 1000) + 60_000, "timestamp": int(time.time() * 1000)},
        "not-the-secret-but-long-enough-for-hs256-000",
        algorithm="HS256",
        headers={"alg": "HS256", "sign_type": "SIGN"},
    )
    assert _code(accounts, f"Bearer {forged}") == "1000"
    assert _code(accounts, make_jwt(f"{'f' * 32}.{secret}")) == "1000"  # JWT for an unknown id
    # revocation: here at once, and in another process's Accounts once its cache expires
    other_process = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir, auth_cache_ttl_s=0.2))
    try:
        jwt_token = make_jwt(key.token)
        assert other_process.authenticate(key.token).key_id == key_id
        assert other_process.authenticate(jwt_token).key_id == key_id
        accounts.revoke_key(key_id)
        assert _code(accounts, key.token) == "1000"
        assert _code(accounts, make_jwt(key.token)) == "1000"
        time.sleep(0.3)
        assert _code(other_process, key.token) == "1000"
        assert _code(other_process, jwt_token) == "1000"  # a JWT verified before revocation too
        assert other_process.authenticate(other.token).account_name == "carol"
    finally:
        other_process.close()


def test_malformed_is_1002(accounts: Accounts) -> None:
    key = accounts.create_key("dave")
    key_id = key.key_id
    now = int(time.time() * 1000)
    unsigned = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({"api_key": key_id, "exp": now + 60_000}) + "."
    no_claim = jwt.encode({"exp": now + 60_000}, key.token.split(".")[1], algorithm="HS256")
    no_exp = jwt.encode({"api_key": key_id}, key.token.split(".")[1], algorithm="HS256")
    for header in (
        "Bearer nodots",
        "a.b.c.d",
        "Bearer .secret",
        "Bearer id.",
        "Bearer x.y.z",
        "Bearer !!!.@@@.###",
        unsigned,
        no_claim,
        no_exp,
        "Basic dXNlcjpwYXNz",
    ):
        assert _code(accounts, header) == "1002", header


def test_expired_is_1003_and_exp_is_milliseconds(accounts: Accounts) -> None:
    key = accounts.create_key("erin")
    past = int(time.time() * 1000) - 10 * 60_000
    assert _code(accounts, make_jwt(key.token, ttl_s=210, now_ms=past)) == "1003"
    # 'exp' one second ago in milliseconds is expired, though as seconds it would lie far in the future
    assert _code(accounts, make_jwt(key.token, ttl_s=-1)) == "1003"
    # a gateway sending 'exp' in seconds is read as seconds
    key_id, secret = key.token.split(".")
    in_seconds = jwt.encode({"api_key": key_id, "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    assert accounts.authenticate(in_seconds).key_id == key_id
    # a token accepted while valid is refused once it expires (the verified-token cache checks expiry)
    short = make_jwt(key.token, ttl_s=0.3)
    assert accounts.authenticate(f"Bearer {short}").key_id == key_id
    time.sleep(0.4)
    assert _code(accounts, f"Bearer {short}") == "1003"
    # a forged expired token is a forgery (1000), not merely expired: the signature is checked first
    forged = make_jwt(f"{key_id}.{'x' * 43}", ttl_s=210, now_ms=past)
    assert _code(accounts, forged) == "1000"


def test_no_secret_in_reprs_messages_or_logs(accounts: Accounts, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = accounts.create_key("frank", "V3")
    secret = key.token.split(".")[1]
    texts = [repr(key), str(key), repr(accounts), repr(accounts.authenticate(key.token))]
    token = make_jwt(key.token)
    for bad in (f"{key.key_id}.{secret}x", key.token + ".extra", token[:-3] + "AAA", token + "x", "junk " + secret):
        with pytest.raises(AuthError) as info:
            accounts.authenticate(bad)
        texts += [str(info.value), repr(info.value), info.value.message]
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert secret not in text
        assert token.split(".")[2] not in text


def test_cached_authentication_does_no_io(data_dir: Path) -> None:
    acc = Accounts.open(data_dir, AccountsSettings(data_dir=data_dir, auth_cache_ttl_s=60))
    key = acc.create_key("speed", "V1")
    token = make_jwt(key.token)
    principal = acc.authenticate(key.token)
    assert acc.authenticate(token) == principal
    acc.store.close()  # from here any query raises: authentication must be served from memory
    for _ in range(100):
        assert acc.authenticate(f"Bearer {key.token}") == principal
        assert acc.authenticate(token) == principal
        acc.check_quota(principal)
    acc.ledger.close()
