"""Errors as values with a code: the one table of error codes shared by every layer.

The codes are the Embedding-2 contract's (../shared/API_CONTRACT.md). The engine raises these with
the code that fits; the HTTP layer maps each code to its status with :data:`HTTP_STATUS` and never
invents codes of its own.

    Embedding2Error
     +-- InputError        the caller sent something invalid (1210/1211/1213/1214/1261)
     +-- OverloadedError   the engine's queue is full (1305)
     +-- EngineError       the backend failed on valid input (500: a bug, never the caller's fault)
"""

from __future__ import annotations

# code -> HTTP status, per the contract's error table
HTTP_STATUS: dict[str, int] = {
    "1000": 401,
    "1001": 401,
    "1002": 401,
    "1003": 401,
    "1113": 429,
    "1210": 400,
    "1211": 400,
    "1213": 400,
    "1214": 400,
    "1261": 400,
    "1302": 429,
    "1305": 429,
    "500": 500,
    # not in the contract's table: the HTTP layer's answers for an unknown path or a wrong method
    "404": 404,
    "405": 405,
}

MALFORMED = "1210"
UNKNOWN_MODEL = "1211"
MISSING_FIELD = "1213"
INVALID_FIELD = "1214"
TOO_LONG = "1261"
OVERLOADED = "1305"
INTERNAL = "500"
NOT_FOUND = "404"
METHOD_NOT_ALLOWED = "405"


class Embedding2Error(Exception):
    """Base of every error embedding2 raises on purpose; carries a contract code."""

    code: str = INTERNAL

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


class InputError(Embedding2Error):
    """Invalid input: empty text, too many tokens, unknown model, bad dimensions."""

    code = INVALID_FIELD


class OverloadedError(Embedding2Error):
    """The engine's bounded queue is full; retry later."""

    code = OVERLOADED


class EngineError(Embedding2Error):
    """The backend failed on valid input."""

    code = INTERNAL
