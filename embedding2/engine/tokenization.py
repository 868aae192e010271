"""The model's tokenizer: prefixes, exact token counts (special tokens included), limits.

Tokenization is CPU work in Rust (``tokenizers``); callers on an event loop run it in a thread
(see :class:`embedding2.engine.embedder.Embedder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from embedding2.errors import TOO_LONG, InputError
from embedding2.models.spec import InputType, ModelSpec

# A token is never longer than this many characters in practice; texts longer than
# max_tokens * this are cut before tokenizing when the caller asked for truncation.
_CHARS_PER_TOKEN_BOUND = 64


@dataclass(frozen=True)
class TokenizedText:
    ids: np.ndarray  # int64 token ids, special tokens included
    truncated: bool = False

    @property
    def n_tokens(self) -> int:
        return int(self.ids.shape[0])


class TextTokenizer:
    """Wraps a ``tokenizers.Tokenizer`` with the model's prefixes and token limit."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        path = Path(spec.path) / "tokenizer.json"
        self._full = Tokenizer.from_file(str(path))
        self._full.no_truncation()
        self._full.no_padding()

    def tokenize(
        self,
        texts: Sequence[str],
        *,
        input_type: InputType | None = None,
        truncate: bool = False,
        max_tokens: int | None = None,
    ) -> list[TokenizedText]:
        """Token ids of each text with the prefix of ``input_type``.

        An item over ``max_tokens`` (default: the model's limit) is an InputError (code 1261)
        unless ``truncate`` is set, in which case it is cut to the limit.
        """
        limit = min(max_tokens or self.spec.max_tokens, self.spec.max_tokens)
        validate_texts(texts)
        prefix = self.spec.prefix(input_type)
        if truncate:
            cap = limit * _CHARS_PER_TOKEN_BOUND
            inputs = [prefix + t[:cap] for t in texts]
        else:
            inputs = [prefix + t for t in texts]
        encodings = self._full.encode_batch(inputs, add_special_tokens=True)
        out: list[TokenizedText] = []
        over: list[int] = []
        for i, enc in enumerate(encodings):
            ids = np.asarray(enc.ids, dtype=np.int64)
            if ids.shape[0] > limit:
                over.append(i)
            out.append(TokenizedText(ids))
        if over and not truncate:
            first = over[0]
            raise InputError(
                f"input[{first}] has {out[first].n_tokens} tokens, over the limit of {limit} tokens per item "
                f"({len(over)} item(s) over the limit); shorten it or ask for truncation",
                code=TOO_LONG,
            )
        for i in over:
            out[i] = TokenizedText(_truncated(out[i].ids, encodings[i].special_tokens_mask, limit), truncated=True)
        return out

    def count(self, texts: Sequence[str], *, input_type: InputType | None = None) -> list[int]:
        """Exact token counts (special tokens and prefix included), with no limit applied."""
        validate_texts(texts)
        prefix = self.spec.prefix(input_type)
        return [len(e.ids) for e in self._full.encode_batch([prefix + t for t in texts])]


def _truncated(ids: np.ndarray, special: Sequence[int], limit: int) -> np.ndarray:
    """``ids`` cut to ``limit`` tokens as the tokenizer's own truncation would: the text's tokens are cut
    from the end and the closing special tokens (``</s>``, ``[SEP]``, ``<|endoftext|>``) are kept.

    Cutting the encoding of the whole text gives the same ids as re-encoding it with truncation on
    (``tokenizers`` truncates tokens, it does not re-tokenize), without a second tokenizer in memory.
    """
    trailing = 0
    while trailing < len(special) and special[len(special) - 1 - trailing]:
        trailing += 1
    if trailing == 0:
        return ids[:limit].copy()
    return np.concatenate([ids[: limit - trailing], ids[len(ids) - trailing :]])


def validate_texts(texts: Sequence[str]) -> None:
    """Empty lists, non-strings and empty strings are errors with a message that says what to fix."""
    if isinstance(texts, str):
        raise InputError("expected a list of texts, got a single string")
    if len(texts) == 0:
        raise InputError("input is empty: send a non-empty string or a non-empty list of strings")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"input[{i}] is {type(t).__name__}, expected a string", code="1214")
        if not t.strip():
            raise InputError(f"input[{i}] is an empty string; every item must contain text")
