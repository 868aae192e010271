"""HTTP responses: JSON bodies, the error envelope with its status, and the retry hints clients obey.

Retry policy (the zai/zhipuai SDKs retry 408/409/429/5xx up to 3 times unless ``x-should-retry: false``;
openai retries twice and honours ``x-should-retry`` and ``retry-after-ms``/``retry-after``):

- 1302 (the key's concurrency limit) and 1305 (engine queue full): ``x-should-retry: true`` with
  ``retry-after-ms``/``retry-after``: a slot or queue space frees within a request's time;
- 1113 (quota spent): ``x-should-retry: false``: retrying cannot help until the account is topped up;
- 4xx validation and authentication errors: ``x-should-retry: false`` (the SDKs do not retry 400/401
  anyway; the header makes it explicit for any other client);
- 500: no header, so the SDKs' own policy (retry) applies.
"""

from __future__ import annotations

import os
import random
import uuid
from math import ceil
from urllib.parse import quote

from starlette.responses import Response

from embedding2.errors import HTTP_STATUS, OVERLOADED, Embedding2Error
from embedding2.service.encoding import render_error

JSON = "application/json"
CONCURRENCY_LIMIT = "1302"
QUOTA_EXHAUSTED = "1113"
_RETRYABLE = {CONCURRENCY_LIMIT, OVERLOADED}

_ids = random.Random()  # seeded from os.urandom; ids need to be unique, not secret
os.register_at_fork(after_in_child=_ids.seed)  # a forked worker must not repeat its parent's ids


def new_request_id() -> str:
    """A random version-4 UUID as 32 hex digits (from a PRNG: ``uuid4`` makes a system call per id)."""
    return uuid.UUID(int=_ids.getrandbits(128), version=4).hex


def header_safe(value: str) -> str:
    """``value`` as a header value: itself when printable ASCII, else percent-encoded (never a CR/LF)."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="")


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=body, status_code=status, media_type=JSON, headers=headers)


def retry_headers(code: str, status: int, retry_after_ms: int) -> dict[str, str]:
    if code in _RETRYABLE:
        return {
            "x-should-retry": "true",
            "retry-after-ms": str(retry_after_ms),
            "retry-after": str(max(1, ceil(retry_after_ms / 1000))),
        }
    if status < 500:
        return {"x-should-retry": "false"}
    return {}


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """ASGI header pairs (latin-1, as HTTP/1.1 carries them)."""
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def error_response(
    code: str,
    message: str,
    *,
    request_id: str | None = None,
    retry_after_ms: int = 250,
    headers: dict[str, str] | None = None,
) -> Response:
    """The contract's error envelope with the status of ``code`` (from the one table in ``errors.py``)."""
    status = HTTP_STATUS.get(code, 500)
    out = retry_headers(code, status, retry_after_ms)
    if request_id is not None:
        out["x-request-id"] = request_id
    if headers:
        out.update(headers)
    return json_response(render_error(code, message, request_id), status, out)


def exception_response(
    exc: Embedding2Error,
    *,
    request_id: str | None = None,
    retry_after_ms: int = 250,
    headers: dict[str, str] | None = None,
) -> Response:
    return error_response(exc.code, exc.message, request_id=request_id, retry_after_ms=retry_after_ms, headers=headers)
