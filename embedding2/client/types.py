"""Typed results of ``embeddings.create``: the same shape and field names as the official SDKs' objects.

``EmbeddingsResponse.data[i].embedding`` is a list of floats (or the base64 string itself when the
caller asked for ``encoding_format="base64"``, as the ``openai`` SDK does), ``.usage.total_tokens`` the
billed tokens. Unknown fields the service adds are kept (``extra="allow"``), like the SDKs' models.
"""

from __future__ import annotations

import base64

import numpy as np
from pydantic import BaseModel, ConfigDict


class Usage(BaseModel):
    """Tokens billed for one request (``completion_tokens`` is always 0 for embeddings)."""

    model_config = ConfigDict(extra="allow")

    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class Embedding(BaseModel):
    """One input's vector, at ``index`` in the request's input list."""

    model_config = ConfigDict(extra="allow")

    object: str = "embedding"
    index: int
    embedding: list[float] | str

    def vector(self) -> np.ndarray:
        """The vector as float32 (decoding base64 when the response carried it that way)."""
        return decode_vector(self.embedding)


class EmbeddingsResponse(BaseModel):
    """The answer to ``embeddings.create``."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    object: str = "list"
    model: str
    data: list[Embedding]
    usage: Usage
    id: str | None = None
    created: int | None = None
    request_id: str | None = None

    def to_numpy(self) -> np.ndarray:
        """The vectors as one float32 array of shape (n, dims), in input order."""
        ordered = sorted(self.data, key=lambda e: e.index)
        if not ordered:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([e.vector() for e in ordered])


def decode_vector(value: list[float] | str) -> np.ndarray:
    """A vector from the contract's float list or base64 (little-endian float32 bytes)."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)


__all__ = ["Embedding", "EmbeddingsResponse", "Usage", "decode_vector"]
