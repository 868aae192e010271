"""The SDK's exceptions: one tree, every exception carrying the contract's ``code`` and the HTTP ``status``.

Lower-level errors (httpx's transport errors, a body that is not JSON) are translated here, at the
boundary, and chained (``raise ... from exc``), so a caller only ever catches these::

    embedding2.errors.Embedding2Error           .code (contract code string), .message
     +-- ClientError                            .status (HTTP status, None when no answer came back)
          +-- APIConnectionError                no answer: refused, reset, DNS    code "connection"
          |    +-- APITimeoutError              no answer in time                 code "timeout"
          +-- APIResponseValidationError        a 2xx answer not in the contract's shape   code "500"
          +-- APIStatusError                    a non-2xx answer: .code from its body, .request_id, .headers
               +-- BadRequestError              400: 1210 1213 1214 (also raised locally, status None)
               |    +-- UnknownModelError       400/1211
               |    +-- TokenLimitError         400/1261 (also raised locally before sending: status None)
               +-- AuthenticationError          401: 1000 1001 1002 1003
               +-- RateLimitError               429
               |    +-- QuotaExceededError      429/1113 (never retried: top the account up)
               |    +-- ConcurrencyLimitError   429/1302 (the key's in-flight limit; retried)
               |    +-- ServerOverloadedError   429/1305 (the service's queue is full; retried)
               +-- NotFoundError                404 (a wrong base_url, most often)
               +-- InternalServerError          5xx (retried)

Errors the SDK finds before sending anything (an empty text, a text over the token limit when
``long_text="error"``) are the same classes with the code the server would have answered and
``status=None``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from embedding2.errors import HTTP_STATUS, Embedding2Error

CONNECTION = "connection"
TIMEOUT = "timeout"


class ClientError(Embedding2Error):
    """Base of everything the SDK raises."""

    def __init__(self, message: str, code: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message, code)
        self.status = status

    def __str__(self) -> str:
        where = f"HTTP {self.status}, " if self.status is not None else ""
        return f"{self.message} ({where}code {self.code})"


class APIConnectionError(ClientError):
    """The request got no answer: connection refused or reset, DNS failure, TLS failure."""

    code = CONNECTION


class APITimeoutError(APIConnectionError):
    """The request got no answer within the timeout."""

    code = TIMEOUT


class APIResponseValidationError(ClientError):
    """A 2xx answer whose body is not the contract's shape (wrong count, bad vectors, not JSON)."""

    code = "500"


class APIStatusError(ClientError):
    """The service answered with a non-2xx status and the contract's error body."""

    def __init__(
        self,
        message: str,
        code: str | None = None,
        *,
        status: int | None = None,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message, code, status=status)
        self.request_id = request_id
        self.headers: dict[str, str] = dict(headers or {})
        self.body = body


class BadRequestError(APIStatusError):
    """400: the request was malformed or invalid (1210, 1213, 1214)."""

    code = "1214"


class UnknownModelError(BadRequestError):
    """400/1211: the service does not serve this model id."""

    code = "1211"


class TokenLimitError(BadRequestError):
    """400/1261: an item, or the whole request, is over its token limit."""

    code = "1261"


class AuthenticationError(APIStatusError):
    """401: no key, an unknown or malformed key, an expired token (1000-1003)."""

    code = "1000"


class RateLimitError(APIStatusError):
    """429: a limit of the account or of the service."""

    code = "1302"


class QuotaExceededError(RateLimitError):
    """429/1113: the account is out of balance or quota; retrying cannot help."""

    code = "1113"


class ConcurrencyLimitError(RateLimitError):
    """429/1302: the key's account has as many requests in flight as its tier allows."""

    code = "1302"


class ServerOverloadedError(RateLimitError):
    """429/1305: the service as a whole is overloaded (its queue is full)."""

    code = "1305"


class NotFoundError(APIStatusError):
    """404: no such path (check ``base_url``: it should end in ``/api/paas/v4`` or ``/v1``)."""

    code = "404"


class InternalServerError(APIStatusError):
    """5xx: the service failed; retried by the SDK."""

    code = "500"


_BY_CODE: dict[str, type[APIStatusError]] = {
    "1000": AuthenticationError,
    "1001": AuthenticationError,
    "1002": AuthenticationError,
    "1003": AuthenticationError,
    "1113": QuotaExceededError,
    "1210": BadRequestError,
    "1211": UnknownModelError,
    "1213": BadRequestError,
    "1214": BadRequestError,
    "1261": TokenLimitError,
    "1302": ConcurrencyLimitError,
    "1305": ServerOverloadedError,
}

_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    429: RateLimitError,
}


def error_class(code: str | None, status: int) -> type[APIStatusError]:
    """The exception class for an answer with ``code`` (from its body) and ``status``."""
    if code in _BY_CODE and HTTP_STATUS.get(code) == status:
        return _BY_CODE[code]
    if status >= 500:
        return InternalServerError
    return _BY_STATUS.get(status, APIStatusError)


def from_response(response: httpx.Response) -> APIStatusError:
    """The typed exception for a non-2xx answer (the contract's ``{"error": {"code", "message"}}`` body)."""
    status = response.status_code
    body: Any = None
    code: str | None = None
    message = ""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = response.text[:2000] if response.content else None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            raw_code = err.get("code")
            code = str(raw_code) if raw_code is not None else None
            message = str(err.get("message") or "")
        elif isinstance(body.get("detail"), str):  # a proxy or a generic framework answer
            message = body["detail"]
    if not message:
        message = f"{response.reason_phrase or 'error'}" + (f": {body}" if isinstance(body, str) and body else "")
    cls = error_class(code, status)
    return cls(
        message,
        code or str(status),
        status=status,
        request_id=response.headers.get("x-request-id"),
        headers=response.headers,
        body=body,
    )


def from_transport(exc: httpx.TransportError, url: str) -> APIConnectionError:
    """The SDK's exception for an httpx transport error (no answer came back)."""
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"no answer from {url} in time ({type(exc).__name__})")
    detail = str(exc) or type(exc).__name__
    return APIConnectionError(f"could not reach {url}: {detail}")


def local_input_error(message: str, code: str) -> BadRequestError:
    """An invalid input found before sending: the class and code the server would have answered."""
    cls = TokenLimitError if code == "1261" else BadRequestError
    return cls(message, code, status=None)


__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientError",
    "ConcurrencyLimitError",
    "InternalServerError",
    "NotFoundError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerOverloadedError",
    "TokenLimitError",
    "UnknownModelError",
    "error_class",
    "from_response",
    "from_transport",
    "local_input_error",
]
