"""Export a model folder to ONNX once, cached on disk by content hash.

The export needs torch + transformers; it runs in a child process (``python -m
embedding2.engine.backends.onnx_export FOLDER OUT``) so that a serving process never holds PyTorch
in memory. The exported graph takes ``input_ids`` and ``attention_mask`` (batch, seq) and returns the
last hidden state (batch, seq, dim); pooling happens outside the graph.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from embedding2.errors import EngineError
from embedding2.models.folder import load_spec

EXPORT_VERSION = "1"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model")


def content_hash(folder: Path) -> str:
    """SHA-256 of the files that define the model (weights, configs), plus the exporter's version."""
    h = hashlib.sha256(f"embedding2-onnx-export-{EXPORT_VERSION}".encode())
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in _WEIGHT_SUFFIXES and not path.name.startswith("."):
            h.update(str(path.relative_to(folder)).encode())
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()[:20]


def export_path(folder: Path, cache_dir: Path) -> Path:
    return cache_dir / "onnx" / content_hash(folder) / "model.onnx"


def ensure_onnx(folder: Path, cache_dir: Path) -> Path:
    """Path of the fp32 ONNX export of ``folder``, exporting it (in a child process) if needed."""
    target = export_path(folder, cache_dir)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "embedding2.engine.backends.onnx_export", str(folder), str(target)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not target.is_file():
        raise EngineError(f"ONNX export of {folder} failed:\n{proc.stderr[-4000:]}")
    return target


def _export(folder: Path, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    if load_spec(folder).is_decoder:
        model.config.use_cache = False  # no key/value cache in the traced graph (one pass, no generation)
    uses_token_types = getattr(config, "type_vocab_size", 0) and config.model_type in ("bert", "xlm-roberta")

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if uses_token_types:
                kwargs["token_type_ids"] = torch.zeros_like(input_ids)
            return self.model(**kwargs).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(
                Wrapper(),
                (ids, mask),
                str(raw),
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "seq"},
                    "attention_mask": {0: "batch", 1: "seq"},
                    "last_hidden_state": {0: "batch", 1: "seq"},
                },
                opset_version=17,
                dynamo=False,
            )
        out = Path(tmp) / "model.onnx"
        _optimize(raw, out, config)
        meta = {"source": str(folder), "hash": target.parent.name, "model_type": config.model_type}
        (Path(tmp) / "meta.json").write_text(json.dumps(meta))
        os.replace(out, target)
        os.replace(Path(tmp) / "meta.json", target.parent / "meta.json")


def _optimize(raw: Path, out: Path, config: object) -> None:
    """Fuse attention / LayerNorm / GELU with ONNX Runtime's transformer optimiser where it knows the family."""
    model_type = getattr(config, "model_type", "")
    if model_type in ("bert", "xlm-roberta", "roberta"):
        from onnxruntime.transformers.optimizer import optimize_model

        opt = optimize_model(
            str(raw),
            model_type="bert",
            num_heads=int(getattr(config, "num_attention_heads", 0)),
            hidden_size=int(getattr(config, "hidden_size", 0)),
            opt_level=1,
            use_gpu=False,
        )
        opt.save_model_to_file(str(out))
    else:
        os.replace(raw, out)


def main() -> None:
    folder, target = Path(sys.argv[1]), Path(sys.argv[2])
    _export(folder, target)


if __name__ == "__main__":
    main()
