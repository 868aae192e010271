"""Read a :class:`ModelSpec` from a Hugging Face-format model folder.

Honours the sentence-transformers files where present: ``modules.json`` (is there a Normalize
module?), the pooling module's ``config.json`` (mean / cls / last-token), ``sentence_bert_config.json``
(``max_seq_length``) and ``config_sentence_transformers.json`` (``prompts``). Where those are absent,
known families supply their authors' conventions (e5's ``query: `` / ``passage: `` prefixes,
last-token pooling for decoder embedders such as Qwen3-Embedding).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from embedding2.errors import InputError
from embedding2.models.spec import InputType, ModelSpec, Pooling

DECODER_TYPES = {"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3_text"}
# families whose authors prescribe prefixes that older folders do not record in their files
E5_PROMPTS = {"query": "query: ", "document": "passage: "}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _pooling_from_st(folder: Path) -> tuple[Pooling | None, bool | None]:
    """(pooling, normalize) from sentence-transformers' modules.json, or (None, None)."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None, None
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    pooling: Pooling | None = None
    normalize = False
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith("Pooling"):
            cfg = _read_json(folder / module.get("path", "") / "config.json")
            if cfg.get("pooling_mode_lasttoken"):
                pooling = "last"
            elif cfg.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif cfg.get("pooling_mode_mean_tokens") or cfg.get("pooling_mode") == "mean":
                pooling = "mean"
            elif cfg.get("pooling_mode") in ("cls", "lasttoken"):
                pooling = "cls" if cfg["pooling_mode"] == "cls" else "last"
        if kind.endswith("Normalize"):
            normalize = True
    return pooling, normalize


def _input_type_of(prompt_name: str) -> InputType | None:
    """The input type a sentence-transformers prompt name stands for (``passage`` is a document)."""
    name = prompt_name.lower()
    if name == "query":
        return "query"
    if name in ("document", "passage", "doc"):
        return "document"
    return None


def _prompts(folder: Path, name_hint: str) -> tuple[dict[str, str], InputType | None]:
    st = _read_json(folder / "config_sentence_transformers.json")
    raw = st.get("prompts") or {}
    prompts: dict[str, str] = {}
    for key, value in raw.items():
        kind = _input_type_of(key)
        if value and kind is not None:
            prompts[kind] = value
    default: InputType | None = None
    marker = folder / "embedding2.json"
    extra = _read_json(marker)
    family = str(extra.get("family", "")) or name_hint.lower()
    if not prompts and "e5" in family and "mistral" not in family:
        prompts = dict(E5_PROMPTS)
    st_default = _input_type_of(str(st.get("default_prompt_name") or ""))
    if "default_input_type" in extra:
        default = extra["default_input_type"]
    elif st_default is not None and st_default in prompts:
        # the authors named the prompt sentence-transformers applies when none is asked for
        default = st_default
    elif prompts.get("query", "").startswith("query: ") and prompts.get("document") == "passage: ":
        # e5's authors: use "query: " on both sides for symmetric tasks (similarity, clustering)
        default = "query"
    elif "query" in prompts and "document" not in prompts:
        # instruction-style models (Qwen3-Embedding): documents carry no prompt, symmetric = no prompt
        default = "document"
    return prompts, default


def load_spec(folder: str | Path, name: str | None = None) -> ModelSpec:
    """Describe the model in ``folder``; raise InputError if it is not a model folder."""
    path = Path(folder).expanduser().resolve()
    config = _read_json(path / "config.json")
    if not config:
        raise InputError(f"{path} is not a Hugging Face model folder (no config.json)", code="1211")
    if not (path / "tokenizer.json").is_file():
        raise InputError(f"{path} has no tokenizer.json; convert the tokenizer to the fast format first")
    model_type = str(config.get("model_type", ""))
    archs = config.get("architectures") or [""]
    is_decoder = model_type in DECODER_TYPES or any("CausalLM" in a for a in archs)
    pooling, normalize = _pooling_from_st(path)
    if pooling is None:
        pooling = "last" if is_decoder else "mean"
    if normalize is None:
        normalize = True
    st_cfg = _read_json(path / "sentence_bert_config.json")
    max_pos = int(config.get("max_position_embeddings", 512))
    if model_type in ("xlm-roberta", "roberta", "camembert"):
        max_pos -= 2  # positions start after the padding index
    max_tokens = int(st_cfg.get("max_seq_length") or max_pos)
    max_tokens = min(max_tokens, max_pos)
    tok_cfg = _read_json(path / "tokenizer_config.json")
    padding_side: Literal["right", "left"] = "left" if tok_cfg.get("padding_side") == "left" else "right"
    label = name or path.name
    prompts, default = _prompts(path, label)
    extra = _read_json(path / "embedding2.json")
    return ModelSpec(
        name=label,
        path=path,
        architecture=str(archs[0]),
        model_type=model_type,
        native_dim=int(config.get("hidden_size", 0)),
        max_tokens=max_tokens,
        pooling=pooling,
        normalize=bool(normalize),
        is_decoder=is_decoder,
        prompts=prompts,
        default_input_type=default,
        matryoshka=bool(extra.get("matryoshka", model_type in ("qwen3",))),
        num_heads=int(config.get("num_attention_heads", 0)),
        padding_side=padding_side,
    )
