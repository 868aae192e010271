"""Model names to folders, and the served model ids of the Embedding-2 contract.

A *backing model* is named by a pack (``e5-small``, ``minilm``), a local folder path, or a Hugging Face
id already present in the local Hugging Face cache (offline). The *served ids* are what clients send
as ``model``: ``embedding-2`` (always 1024 dimensions) and ``embedding-3`` (``dimensions`` 256, 512, 1024
or 2048, default 2048), each with its token limits; both are backed by the configured model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from embedding2.errors import InputError
from embedding2.models.packs import PACKS, ensure_pack


@dataclass(frozen=True)
class ServedModel:
    id: str
    dimensions: tuple[int, ...]  # accepted values of the request's `dimensions`
    default_dimensions: int
    max_item_tokens: int
    max_request_tokens: int | None  # None: no request-wide token limit
    max_items: int | None  # None: no item-count limit beyond the request-token limit


SERVED_MODELS: dict[str, ServedModel] = {
    "embedding-2": ServedModel("embedding-2", (1024,), 1024, 512, 8192, None),
    "embedding-3": ServedModel("embedding-3", (256, 512, 1024, 2048), 2048, 3072, None, 64),
}


def served_model(model_id: str) -> ServedModel:
    try:
        return SERVED_MODELS[model_id]
    except KeyError:
        known = ", ".join(SERVED_MODELS)
        raise InputError(f"unknown model {model_id!r}; this service serves {known}", code="1211") from None


def _hf_cache_folder(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None


def resolve_model_folder(name: str | Path, cache_dir: Path) -> Path:
    """The folder of backing model ``name`` (converting a pack on first use)."""
    text = str(name)
    if text in PACKS:
        return ensure_pack(text, cache_dir)
    path = Path(text).expanduser()
    if path.is_dir():
        return path.resolve()
    if "/" in text and not text.startswith((".", "/")):
        cached = _hf_cache_folder(text)
        if cached is not None:
            return cached
    raise InputError(
        f"model {text!r} is neither a pack ({', '.join(sorted(PACKS))}), a folder, "
        "nor a Hugging Face id in the local cache",
        code="1211",
    )
