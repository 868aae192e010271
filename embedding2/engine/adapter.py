"""L2 normalisation and the dimension adapter.

Embedding-2 promises 1024-dimensional vectors; embedding-3 lets the caller choose 256, 512, 1024 or
2048. The backing model has its own native dimension ``n``. To serve ``d`` dimensions:

- ``d == n``: the model's vector as it is.
- ``d > n``: a fixed isometry ``R^n -> R^d``: ``y = Q x`` where ``Q`` is ``d x n`` with orthonormal
  columns, taken as the first ``n`` columns of the Sylvester-Hadamard matrix of order ``2^k >= d``
  (rows ``0..d-1``), scaled by ``1/sqrt(2^k)``, with column signs from a fixed seed, and rows
  re-orthonormalised when ``d`` is not a power of two. Because ``Q^T Q = I``, every dot product and
  cosine between two vectors is unchanged (to float32 rounding), so quality is exactly the model's;
  the extra dimensions carry no new information. The map is a constant of the code: the same text
  always gives the same vector.
- ``d < n``: Matryoshka truncation (first ``d`` coordinates, re-normalised). Exact in spirit for models
  trained for it (Qwen3-Embedding); for other models it is lossy and documented as such.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_SIGN_SEED = 20240901


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float32 (zero rows stay zero); each row independent of the others."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.square(x, dtype=np.float64).sum(axis=1)).astype(np.float32)
    norms = np.maximum(norms, np.float32(1e-12))
    return (x / norms[:, None]).astype(np.float32, copy=False)


def _hadamard(order: int) -> np.ndarray:
    h = np.ones((1, 1), dtype=np.float64)
    while h.shape[0] < order:
        h = np.block([[h, h], [h, -h]])
    return h


@lru_cache(maxsize=16)
def isometry(native: int, target: int) -> np.ndarray:
    """The ``native x target`` float32 matrix ``Q^T`` (so that ``y = x @ Q^T``) with ``Q^T Q = I``."""
    if target < native:
        raise ValueError("an isometry needs target >= native")
    order = 1
    while order < max(target, native):
        order *= 2
    h = _hadamard(order)[:target, :native] / np.sqrt(order)
    signs = np.where(np.random.default_rng(_SIGN_SEED).random(native) < 0.5, -1.0, 1.0)
    q = h * signs[None, :]
    if target != order:
        # rows were dropped: columns are no longer exactly orthonormal; restore with QR (deterministic)
        q, r = np.linalg.qr(q)
        q = q * np.sign(np.diag(r))[None, :]
    return np.ascontiguousarray(q.T, dtype=np.float32)


def adapt_dimensions(vectors: np.ndarray, target: int | None) -> np.ndarray:
    """Map L2-normalised ``vectors`` (n native dims) to ``target`` dims, L2-normalised."""
    native = vectors.shape[1]
    if target is None or target == native:
        return vectors
    if target > native:
        q = isometry(native, target)
        # one matrix-vector product per row: a matrix-matrix product would take a different BLAS
        # path (and summation order) depending on how many rows share the call, and a text's
        # vector must not depend on its batchmates
        return l2_normalize(np.stack([row @ q for row in vectors]))
    return l2_normalize(vectors[:, :target])
