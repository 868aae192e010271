"""ModelSpec: the facts about one model folder that the engine needs, and nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Pooling = Literal["mean", "cls", "last"]
InputType = Literal["query", "document"]


@dataclass(frozen=True)
class ModelSpec:
    """A model folder, described.

    ``prompts`` maps an input type (``query``/``document``) to the text prefix the model's authors
    prescribe for it; ``default_input_type`` is the one they recommend for symmetric similarity.
    """

    name: str
    path: Path
    architecture: str  # e.g. BertModel, XLMRobertaModel, Qwen3Model
    model_type: str  # transformers model_type: bert, xlm-roberta, qwen3 ...
    native_dim: int
    max_tokens: int  # per item, special tokens included
    pooling: Pooling
    normalize: bool = True
    is_decoder: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_input_type: InputType | None = None
    matryoshka: bool = False  # the model was trained so that prefixes of its vector are embeddings
    num_heads: int = 0
    padding_side: Literal["right", "left"] = "right"

    def prefix(self, input_type: InputType | None) -> str:
        """The prefix to prepend for ``input_type`` (or the default input type)."""
        kind = input_type or self.default_input_type
        if kind is None:
            return ""
        return self.prompts.get(kind, "")
