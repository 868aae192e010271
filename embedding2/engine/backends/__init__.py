"""Backends: the forward pass of a model folder, behind one small interface.

A backend takes right-padded token ids and returns one pooled, *unnormalised* float32 vector per
row; normalisation and the dimension adapter happen above it. ``onnx`` (ONNX Runtime, CPU; the
default) and ``torch`` (PyTorch, CPU or GPU in fp16/bf16) implement it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from embedding2.models.spec import ModelSpec
from embedding2.settings import Settings


class Backend(Protocol):
    name: str

    def forward(self, input_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``input_ids`` (batch, padded_len) int64, right-padded; ``lengths`` (batch,) int64.

        Returns (batch, native_dim) float32 pooled vectors, not normalised.
        """
        ...

    def close(self) -> None: ...


def create_backend(spec: ModelSpec, settings: Settings) -> Backend:
    if settings.backend == "torch":
        from embedding2.engine.backends.torch_backend import TorchBackend

        return TorchBackend(spec, settings)
    from embedding2.engine.backends.onnx_backend import OnnxBackend

    return OnnxBackend(spec, settings)
