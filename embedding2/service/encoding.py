"""Response bodies as bytes: the embeddings list in float JSON or base64, and the error envelope.

Float vectors are written by orjson straight from the float32 arrays, each number in the shortest text
that reads back to the same float32, so a client that parses them and casts to float32 gets the
server's vectors bit for bit. ``base64`` is the little-endian float32 bytes of each vector, as the
OpenAI SDK expects (it decodes with ``np.frombuffer(..., dtype="float32")``).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

_OPTS = orjson.OPT_SERIALIZE_NUMPY


def vector_to_base64(vector: np.ndarray) -> str:
    """Little-endian float32 bytes of ``vector``, base64-encoded."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def render_embeddings(
    vectors: np.ndarray,
    *,
    model: str,
    encoding_format: str,
    total_tokens: int,
    response_id: str,
    created: int,
    request_id: str,
) -> bytes:
    """The contract's response body for ``vectors`` ((n, d) float32), in input order."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    data: list[dict[str, Any]]
    if encoding_format == "base64":
        data = [{"index": i, "object": "embedding", "embedding": vector_to_base64(v)} for i, v in enumerate(vectors)]
    else:
        data = [{"index": i, "object": "embedding", "embedding": v} for i, v in enumerate(vectors)]
    body = {
        "model": model,
        "object": "list",
        "data": data,
        "usage": {"prompt_tokens": total_tokens, "completion_tokens": 0, "total_tokens": total_tokens},
        "id": response_id,
        "created": created,
        "request_id": request_id,
    }
    return orjson.dumps(body, option=_OPTS)


def render_error(code: str, message: str, request_id: str | None = None) -> bytes:
    """``{"error": {"code": "<code>", "message": "<message>"}}`` (plus the request id when known)."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return orjson.dumps(body)


def render_json(body: Any) -> bytes:
    return orjson.dumps(body, option=_OPTS)
