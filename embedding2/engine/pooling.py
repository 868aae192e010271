"""Pooling of token states into one vector per text (NumPy, row by row so batching cannot change it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embedding2.models.spec import Pooling


def pool(hidden: np.ndarray, lengths: Sequence[int], mode: Pooling) -> np.ndarray:
    """``hidden`` is (batch, padded_len, dim) with right padding; returns (batch, dim) float32.

    Each row is reduced over its own tokens only, in the same order whatever the batch holds, so
    a text's vector does not depend on its batchmates.
    """
    out = np.empty((hidden.shape[0], hidden.shape[2]), dtype=np.float32)
    for i, n in enumerate(lengths):
        if mode == "mean":
            out[i] = hidden[i, :n].astype(np.float64).sum(axis=0) / n
        elif mode == "cls":
            out[i] = hidden[i, 0]
        else:  # last token
            out[i] = hidden[i, n - 1]
    return out
