"""PyTorch backend: CPU in float32, GPU in float16/bfloat16 with scaled-dot-product attention."""

from __future__ import annotations

import numpy as np

from embedding2.errors import InputError
from embedding2.models.spec import ModelSpec
from embedding2.settings import Settings


class TorchBackend:
    name = "torch"

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        import torch
        from transformers import AutoModel

        self.torch = torch
        self.spec = spec
        self.device = torch.device(settings.device)
        dtype = getattr(torch, settings.torch_dtype)
        if self.device.type == "cpu" and dtype != torch.float32:
            raise InputError("float16/bfloat16 need a GPU; use torch_dtype=float32 on the CPU")
        if self.device.type == "cpu" and settings.threads:
            torch.set_num_threads(settings.threads)
        model = AutoModel.from_pretrained(spec.path, dtype=dtype, attn_implementation="sdpa")
        if spec.is_decoder:
            model.config.use_cache = False  # a decoder would otherwise keep every batch's keys and values
        self.model = model.to(self.device).eval()
        self.uses_token_types = spec.model_type in ("bert", "xlm-roberta")

    def forward(self, input_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            ids = torch.from_numpy(input_ids).to(self.device)
            lens = torch.from_numpy(lengths).to(self.device)
            mask = (torch.arange(ids.shape[1], device=self.device)[None, :] < lens[:, None]).long()
            kwargs = {"input_ids": ids, "attention_mask": mask}
            if self.uses_token_types:
                kwargs["token_type_ids"] = torch.zeros_like(ids)
            hidden = self.model(**kwargs).last_hidden_state.float()
            if self.spec.pooling == "mean":
                pooled = (hidden * mask[..., None]).sum(dim=1) / lens[:, None]
            elif self.spec.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                pooled = hidden[torch.arange(hidden.shape[0], device=self.device), lens - 1]
            return pooled.cpu().numpy().astype(np.float32)

    def close(self) -> None:
        self.model = None
