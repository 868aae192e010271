"""The ``embedding2`` command: one entry point, one subcommand per capability.

Subcommands owned here: ``embed`` and ``models``. Other layers register their own subcommands
through a ``register(subparsers)`` function (see ``_REGISTRARS``), so this module stays a thin
dispatcher and never learns their internals.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from embedding2.errors import Embedding2Error
from embedding2.settings import load_settings

# modules that add subcommands: each has register(subparsers) -> None
_REGISTRARS = (
    "embedding2.service.commands",
    "embedding2.accounts.cli",
    "embedding2.evaluation.commands",
    "embedding2.apps.commands",
)


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="backing model: a pack name (e5-small, minilm) or a model folder")
    p.add_argument("--cache-dir", type=Path, help="where converted packs and ONNX exports live")
    p.add_argument("--backend", choices=["onnx", "torch"], help="inference backend (default onnx)")
    p.add_argument("--device", help="torch device, e.g. cuda (with --backend torch)")
    p.add_argument("--quantize", action="store_true", default=None, help="int8 ONNX model (fidelity-checked)")
    p.add_argument("--threads", type=int, help="intra-op threads (0 = all cores)")
    p.add_argument("--config", type=Path, help="settings file (TOML, JSON or KEY=VALUE lines)")


def settings_from_args(args: argparse.Namespace) -> Any:
    return load_settings(
        getattr(args, "config", None),
        model=getattr(args, "model", None),
        cache_dir=getattr(args, "cache_dir", None),
        backend=getattr(args, "backend", None),
        device=getattr(args, "device", None),
        quantize=getattr(args, "quantize", None),
        threads=getattr(args, "threads", None),
    )


def cmd_embed(args: argparse.Namespace) -> int:
    from embedding2.engine.embedder import Embedder

    texts = list(args.texts) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    with Embedder(settings=settings_from_args(args)) as emb:
        served = None if args.native else args.served_model
        res = emb.embed(
            texts,
            model=served,
            dimensions=args.dimensions,
            input_type=args.input_type,
            truncate=args.truncate,
        )
    out = {
        "model": served or emb.spec.name,
        "data": [
            {"index": i, "tokens": n, "embedding": [float(x) for x in v]}
            for i, (v, n) in enumerate(zip(res.vectors, res.token_counts, strict=True))
        ],
        "usage": {"prompt_tokens": res.total_tokens, "total_tokens": res.total_tokens},
    }
    json.dump(out, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from embedding2.models.packs import PACKS, pack_folder
    from embedding2.models.registry import SERVED_MODELS

    settings = settings_from_args(args)
    print("model packs (convert with `embedding2 models convert NAME`):")
    for name, pack in PACKS.items():
        folder = pack_folder(name, settings.cache_dir)
        state = "converted" if (folder / "config.json").is_file() else "not converted"
        print(f"  {name:10s} {pack.description}  [{state}: {folder}]")
    print("served ids:")
    for sid, served in SERVED_MODELS.items():
        dims = "/".join(str(d) for d in served.dimensions)
        print(
            f"  {sid:12s} dimensions {dims} (default {served.default_dimensions}), "
            f"{served.max_item_tokens} tokens per item, backed by {settings.model}"
        )
    return 0


def cmd_models_convert(args: argparse.Namespace) -> int:
    from embedding2.engine.backends.onnx_export import ensure_onnx
    from embedding2.models.packs import ensure_pack

    settings = settings_from_args(args)
    folder = ensure_pack(args.name, settings.cache_dir, force=args.force)
    print(folder)
    if not args.no_onnx:
        print(ensure_onnx(folder, settings.cache_dir))
    return 0


def cmd_models_info(args: argparse.Namespace) -> int:
    from embedding2.models.folder import load_spec
    from embedding2.models.registry import resolve_model_folder

    settings = settings_from_args(args)
    name = args.name or settings.model
    spec = load_spec(resolve_model_folder(name, settings.cache_dir), name=name)
    info = {
        "name": spec.name,
        "path": str(spec.path),
        "architecture": spec.architecture,
        "model_type": spec.model_type,
        "native_dimensions": spec.native_dim,
        "max_tokens": spec.max_tokens,
        "pooling": spec.pooling,
        "normalize": spec.normalize,
        "prompts": spec.prompts,
        "default_input_type": spec.default_input_type,
        "matryoshka": spec.matryoshka,
    }
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embedding2", description="Self-hosted Embedding-2 service and toolkit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("embed", help="embed texts in-process and print the vectors as JSON")
    p.add_argument("texts", nargs="*", help="texts to embed (default: one per line on standard input)")
    p.add_argument("--served-model", default="embedding-2", help="served id whose limits/dimensions apply")
    p.add_argument("--native", action="store_true", help="the backing model's own vectors and limit")
    p.add_argument("--dimensions", type=int)
    p.add_argument("--input-type", choices=["query", "document"])
    p.add_argument("--truncate", action="store_true", help="cut texts over the token limit instead of failing")
    _engine_args(p)
    p.set_defaults(func=cmd_embed)

    models = sub.add_parser("models", help="list, convert and describe models")
    msub = models.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("list", help="model packs and served ids")
    _engine_args(p)
    p.set_defaults(func=cmd_models_list)
    p = msub.add_parser("convert", help="convert a model pack into a model folder (and export it to ONNX)")
    p.add_argument("name", help="pack name: e5-small or minilm")
    p.add_argument("--force", action="store_true", help="convert again even if already converted")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    _engine_args(p)
    p.set_defaults(func=cmd_models_convert)
    p = msub.add_parser("info", help="what embedding2 reads from a model folder or pack")
    p.add_argument("name", nargs="?", help="pack name or folder (default: the configured model)")
    _engine_args(p)
    p.set_defaults(func=cmd_models_info)

    for module_name in _REGISTRARS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that layer is not installed in this build
            raise
        register: Callable[[Any], None] = module.register
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Embedding2Error as exc:
        print(f"embedding2: error {exc.code}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
