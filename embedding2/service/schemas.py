"""Request parsing and validation for ``POST /embeddings``: raw body bytes in, :class:`EmbeddingRequest` out.

Parsing is hand-written rather than a pydantic model because the contract fixes which code each kind
of mistake gets, and the checks run cheapest first so that no client can make the server do much work
for a bad request:

- body not JSON, not UTF-8, not an object, a field of the wrong JSON type   -> 1210
- ``model`` or ``input`` missing (absent or ``null``)                       -> 1213
- ``model`` not a served id                                                 -> 1211
- empty input, empty list, too many items, token-id arrays, bad values      -> 1214
- an item (or the whole input) longer in *characters* than its token limit
  times a generous bound, refused before tokenizing                         -> 1261

Token limits proper (512 tokens per item, 8,192 per request for embedding-2) are checked by the
engine's ``prepare`` after tokenizing, also with 1261. Unknown keys are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from embedding2.errors import INVALID_FIELD, MALFORMED, MISSING_FIELD, TOO_LONG, UNKNOWN_MODEL, InputError
from embedding2.models.registry import SERVED_MODELS, ServedModel

EncodingFormat = Literal["float", "base64"]
MAX_REQUEST_ID_CHARS = 128


@dataclass(frozen=True)
class RequestLimits:
    """The limits checked before tokenizing (see the module docstring)."""

    max_items: int = 2048  # strings per request (the served model's own cap applies too)
    chars_per_token: int = 64  # an item over (token limit x this) characters cannot fit
    backing_max_tokens: int | None = None  # the backing model's own per-item token limit, if lower

    def item_tokens(self, served: ServedModel) -> int:
        if self.backing_max_tokens is None:
            return served.max_item_tokens
        return min(served.max_item_tokens, self.backing_max_tokens)


@dataclass(frozen=True)
class EmbeddingRequest:
    """A parsed, type-checked embeddings request (token limits not yet checked)."""

    model: str
    input: list[str]
    dimensions: int | None
    encoding_format: EncodingFormat
    input_type: Literal["query", "document"] | None
    request_id: str | None
    user: str | None


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"`{key}` must be a string, got {_type_name(value)}", code=MALFORMED)
    return value


def _is_token_ids(value: Any) -> bool:
    """A list of ints, or a list of lists of ints (what LangChain's OpenAI wrapper sends)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if not isinstance(value, list) or not value:
        return False
    return all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def parse_json_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise InputError(
            'the request body is empty; send a JSON object such as {"model": "embedding-2", "input": "..."}',
            code=MALFORMED,
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"the request body is not valid UTF-8 JSON: {exc}", code=MALFORMED) from None
    if not isinstance(body, dict):
        raise InputError(f"the request body must be a JSON object, got {_type_name(body)}", code=MALFORMED)
    return body


def _parse_input(value: Any) -> list[str]:
    if isinstance(value, str):
        if not value.strip():
            raise InputError("`input` is an empty string; send text to embed", code=INVALID_FIELD)
        return [value]
    if not isinstance(value, list):
        raise InputError(f"`input` must be a string or an array of strings, got {_type_name(value)}", code=MALFORMED)
    if not value:
        raise InputError("`input` is an empty array; send at least one string", code=INVALID_FIELD)
    if all(_is_token_ids(v) for v in value):
        raise InputError(
            "`input` looks like token ids (an array of integers); this service embeds text only: "
            "send strings (with LangChain's OpenAIEmbeddings, set check_embedding_ctx_length=False)",
            code=INVALID_FIELD,
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InputError(f"`input[{i}]` must be a string, got {_type_name(item)}", code=MALFORMED)
        if not item.strip():
            raise InputError(f"`input[{i}]` is an empty string; every item must contain text", code=INVALID_FIELD)
    return value


def _check_sizes(texts: list[str], served: ServedModel, limits: RequestLimits) -> None:
    """Refuse, without tokenizing, what cannot possibly fit the model's limits."""
    max_items, chars_per_token = limits.max_items, limits.chars_per_token
    limit_items = min(max_items, served.max_items or max_items)
    if len(texts) > limit_items:
        raise InputError(
            f"`input` has {len(texts)} items; {served.id} takes at most {limit_items} per request: "
            "split it into smaller requests",
            code=INVALID_FIELD,
        )
    item_tokens = limits.item_tokens(served)
    item_chars = item_tokens * chars_per_token
    total = 0
    for i, text in enumerate(texts):
        n = len(text)
        if n > item_chars:
            raise InputError(
                f"`input[{i}]` has {n} characters, far over the limit of {item_tokens} tokens per item "
                f"for {served.id}; shorten it",
                code=TOO_LONG,
            )
        total += n
    if served.max_request_tokens is not None and total > served.max_request_tokens * chars_per_token:
        raise InputError(
            f"`input` has {total} characters in all, far over the limit of {served.max_request_tokens} tokens "
            f"per request for {served.id}; split it into smaller requests",
            code=TOO_LONG,
        )


def parse_embedding_request(raw: bytes, limits: RequestLimits | None = None) -> EmbeddingRequest:
    """Parse and type-check an embeddings request body (raises InputError with the contract's codes)."""
    body = parse_json_body(raw)
    model = body.get("model")
    if model is None:
        raise InputError('`model` is required, e.g. "embedding-2"', code=MISSING_FIELD)
    if body.get("input") is None:
        raise InputError("`input` is required: a string or an array of strings", code=MISSING_FIELD)
    if not isinstance(model, str):
        raise InputError(f"`model` must be a string, got {_type_name(model)}", code=MALFORMED)
    served = SERVED_MODELS.get(model)
    if served is None:
        raise InputError(
            f"unknown model {model[:100]!r}; this service serves {', '.join(SERVED_MODELS)}", code=UNKNOWN_MODEL
        )

    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool)):
        raise InputError(f"`dimensions` must be an integer, got {_type_name(dimensions)}", code=MALFORMED)
    if dimensions is not None and dimensions not in served.dimensions:
        allowed = ", ".join(str(d) for d in served.dimensions)
        raise InputError(f"{model} supports `dimensions` {allowed}, not {dimensions}", code=INVALID_FIELD)

    encoding_format = _optional_str(body, "encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise InputError(
            f'`encoding_format` must be "float" or "base64", not {encoding_format[:50]!r}', code=INVALID_FIELD
        )
    input_type = _optional_str(body, "input_type")
    if input_type is not None and input_type not in ("query", "document"):
        raise InputError(f'`input_type` must be "query" or "document", not {input_type[:50]!r}', code=INVALID_FIELD)
    request_id = _optional_str(body, "request_id")
    if request_id is not None and not (0 < len(request_id) <= MAX_REQUEST_ID_CHARS):
        raise InputError(f"`request_id` must have 1 to {MAX_REQUEST_ID_CHARS} characters", code=INVALID_FIELD)
    user = body.get("user") if isinstance(body.get("user"), str) else None

    texts = _parse_input(body["input"])
    _check_sizes(texts, served, limits or RequestLimits())
    return EmbeddingRequest(
        model=model,
        input=texts,
        dimensions=dimensions,
        encoding_format=encoding_format,  # type: ignore[arg-type]
        input_type=input_type,  # type: ignore[arg-type]
        request_id=request_id,
        user=user,
    )
