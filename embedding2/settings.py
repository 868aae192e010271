"""Every limit and default of embedding2 in one settings object.

Each field is settable by an ``EMBEDDING2_<FIELD>`` environment variable, by a TOML/JSON/env file
named in ``EMBEDDING2_CONFIG`` (fields at top level) and by command-line flags, which the CLI passes
in as overrides. Nothing reads the environment at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import tomllib
from platformdirs import user_cache_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_cache_dir() -> Path:
    return Path(user_cache_dir("embedding2"))


class Settings(BaseSettings):
    """Settings of the engine and model registry (the service adds its own on top)."""

    model_config = SettingsConfigDict(env_prefix="EMBEDDING2_", extra="ignore")

    model: str = Field("e5-small", description="backing model: a pack name (e5-small, minilm) or a folder")
    cache_dir: Path = Field(default_factory=default_cache_dir, description="converted packs and ONNX exports")
    backend: Literal["onnx", "torch"] = Field("onnx", description="onnx (CPU) or torch (CPU/GPU)")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:0 ...")
    torch_dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="torch dtype; float16/bfloat16 only on GPU"
    )
    quantize: bool = Field(False, description="int8 dynamic quantisation of the ONNX model (fidelity-checked)")
    threads: int = Field(0, description="intra-op threads of the backend; 0 = one per physical core")
    max_batch_tokens: int | None = Field(
        None,
        description="token budget of one forward pass (padded tokens); default 2048 on onnx (on a CPU a "
        "big batch is no faster per token and its scratch memory stays allocated), 16384 on torch",
    )
    max_batch_size: int = Field(256, description="at most this many texts in one forward pass")
    max_queue_tokens: int = Field(131072, description="padded tokens waiting in the engine queue before 429/1305")
    batch_wait_ms: float = Field(0.0, description="how long the scheduler waits to fill a batch")
    length_bucket: int = Field(4, description="texts are padded to a multiple of this many tokens (4x above 128)")

    @property
    def batch_token_budget(self) -> int:
        """``max_batch_tokens``, or the backend's default when it is not set."""
        if self.max_batch_tokens is not None:
            return self.max_batch_tokens
        return 2048 if self.backend == "onnx" else 16384


def _read_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix == ".json":
        data = json.loads(text)
    else:
        data = {}
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                data[key.strip().lower().removeprefix("embedding2_")] = value.strip()
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from (lowest to highest) defaults, config file, environment, explicit overrides."""
    file_values: dict[str, Any] = {}
    path = config_file or os.environ.get("EMBEDDING2_CONFIG")
    if path:
        file_values = _read_config_file(Path(path))
    env_settings = Settings()
    env_set = {k for k in Settings.model_fields if f"EMBEDDING2_{k.upper()}" in os.environ}
    merged: dict[str, Any] = dict(file_values)
    merged.update({k: getattr(env_settings, k) for k in env_set})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**merged)
