"""Token counting for the SDK: exact counts from the backing model's tokenizer, or a stated estimate.

Planning a big job into contract-sized requests (<= 512 tokens an item, <= 8,192 a request for
embedding-2) needs each text's token count *before* sending it. Against an embedding2 server the SDK
learns the backing model from ``GET /models`` and counts exactly what the server counts, with the
same code (:class:`embedding2.engine.tokenization.TextTokenizer`: the model's prefix for
``input_type`` and its special tokens included), so no planned request is ever refused. The hosted
service's tokenizer is not published: :class:`EstimatedTokenCounter` over-counts ordinary text on
purpose (see its docstring), and a request the service still refuses as too long is split in two and
sent again.

    TokenCounter (protocol)   count(texts, input_type) -> exact or estimated counts; spans(text)
     +-- ModelTokenCounter    an embedding2 model (pack name such as "e5-small", or a model folder)
     +-- EstimatedTokenCounter  no tokenizer: a conservative estimate from the characters
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx
from tokenizers import Tokenizer

from embedding2.engine.tokenization import TextTokenizer
from embedding2.errors import Embedding2Error
from embedding2.models.folder import load_spec
from embedding2.models.registry import resolve_model_folder
from embedding2.models.spec import InputType, ModelSpec
from embedding2.settings import load_settings

Span = tuple[int, int]


@runtime_checkable
class TokenCounter(Protocol):
    """What the planner needs to know about the service's tokenizer."""

    @property
    def name(self) -> str: ...

    @property
    def exact(self) -> bool:
        """True when the counts are the server's own (an embedding2 server on the same model)."""
        ...

    @property
    def max_tokens(self) -> int | None:
        """The backing model's own per-item limit (prefix and special tokens included), if known."""
        ...

    def count(self, texts: Sequence[str], input_type: InputType | None = None) -> list[int]:
        """Tokens of each text as the service counts them (prefix and special tokens included)."""
        ...

    def spans(self, text: str) -> list[Span]:
        """Character spans ``(start, end)`` of the text's own tokens (no prefix, no special tokens)."""
        ...


class ModelTokenCounter:
    """Exact counts from an embedding2 model's tokenizer (the server's code path, byte for byte)."""

    exact = True

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._text_tokenizer = TextTokenizer(spec)
        self._plain = Tokenizer.from_file(str(Path(spec.path) / "tokenizer.json"))
        self._plain.no_truncation()
        self._plain.no_padding()

    @classmethod
    def load(cls, model: str | Path, cache_dir: str | Path | None = None) -> ModelTokenCounter:
        """The tokenizer of pack ``model`` (``e5-small``, ``minilm``) or of a model folder.

        ``cache_dir`` defaults to the engine's (``EMBEDDING2_CACHE_DIR`` or the user cache directory);
        a pack not yet converted there is converted once (as the server does on its first start).
        """
        folder_cache = Path(cache_dir) if cache_dir is not None else load_settings().cache_dir
        folder = resolve_model_folder(model, folder_cache)
        return cls(load_spec(folder, name=str(model)))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def max_tokens(self) -> int | None:
        return self.spec.max_tokens

    def count(self, texts: Sequence[str], input_type: InputType | None = None) -> list[int]:
        return self._text_tokenizer.count(list(texts), input_type=input_type)

    def spans(self, text: str) -> list[Span]:
        enc = self._plain.encode(text, add_special_tokens=False)
        return [(int(s), int(e)) for s, e in enc.offsets if e > s]


# ASCII letters in pieces of at most 3, digits in pieces of at most 2, any other non-space character
# alone (CJK, punctuation, symbols); whitespace is free (real tokenizers fold it into the next token).
_PIECE = re.compile(r"[A-Za-z]{1,3}|[0-9]{1,2}|\S")


class EstimatedTokenCounter:
    """A conservative token estimate for a service whose tokenizer the SDK does not have.

    Counts one token per 3 ASCII letters, per 2 digits, per other non-space character (each CJK
    character, each punctuation mark), two for a character outside the Basic Multilingual Plane, plus
    ``overhead`` (8) for the special tokens and any prefix the service adds. Real subword tokenizers
    use fewer tokens than this on ordinary text (English averages about 4 characters a token, common
    Chinese characters one token or less), so planned requests stay under the limits with room to
    spare, at the cost of smaller requests. It is an estimate, not a bound: a text of rare
    characters can need more tokens. The SDK therefore splits a request the service refuses as
    too long (1261) and resends the halves.
    """

    exact = False
    max_tokens = None

    def __init__(self, overhead: int = 8) -> None:
        self.overhead = overhead

    @property
    def name(self) -> str:
        return "estimate"

    def _count_one(self, text: str) -> int:
        n = self.overhead
        for m in _PIECE.finditer(text):
            n += 2 if ord(m.group()[0]) > 0xFFFF else 1
        return n

    def count(self, texts: Sequence[str], input_type: InputType | None = None) -> list[int]:
        return [self._count_one(t) for t in texts]

    def spans(self, text: str) -> list[Span]:
        return [m.span() for m in _PIECE.finditer(text)]


HOSTED_HOSTS = ("open.bigmodel.cn", "api.z.ai")

_lock = threading.Lock()
_loaded: dict[tuple[str, str], ModelTokenCounter] = {}


def default_tokenizer_for(base_url: str) -> str:
    """``"estimate"`` for the hosted service (its tokenizer is not published), else ``"auto"``."""
    return "estimate" if any(h in base_url for h in HOSTED_HOSTS) else "auto"


def discover_backing_model(base_url: str, headers: Mapping[str, str] | None = None) -> str | None:
    """The backing model an embedding2 server reports in ``GET {base_url}/models``, or None."""
    try:
        response = httpx.get(f"{base_url}/models", headers=dict(headers or {}), timeout=10.0)
        if not response.is_success:
            return None
        for item in response.json().get("data") or []:
            backing = item.get("backing_model") if isinstance(item, dict) else None
            if isinstance(backing, str) and backing:
                return backing
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return None


def _load_model(name: str, cache_dir: str | Path | None) -> ModelTokenCounter:
    key = (name, str(cache_dir))
    with _lock:
        counter = _loaded.get(key)
        if counter is None:
            counter = ModelTokenCounter.load(name, cache_dir)
            _loaded[key] = counter
        return counter


def load_token_counter(
    tokenizer: str | Path | TokenCounter | None,
    *,
    base_url: str,
    cache_dir: str | Path | None = None,
    headers: Mapping[str, str] | None = None,
) -> TokenCounter:
    """Resolve the client's ``tokenizer`` argument (loaded models are shared across clients).

    ``"auto"`` (the default except against the hosted service) asks the server which backing model it
    runs (``GET /models``, embedding2's ``backing_model``) and loads that model's tokenizer; when the
    server does not say, or the model is not available here, it falls back to the estimate, with a
    warning.
    """
    if tokenizer is not None and not isinstance(tokenizer, (str, Path)):
        return tokenizer
    name = str(tokenizer) if tokenizer is not None else default_tokenizer_for(base_url)
    if name == "estimate":
        return EstimatedTokenCounter()
    if name != "auto":
        return _load_model(name, cache_dir)
    backing = discover_backing_model(base_url, headers)
    if backing is None:
        warnings.warn(
            f"{base_url}/models does not name a backing model: embed_many plans with estimated token counts "
            "(pass tokenizer= the service's model for exact counts)",
            RuntimeWarning,
            stacklevel=3,
        )
        return EstimatedTokenCounter()
    try:
        return _load_model(backing, cache_dir)
    except (Embedding2Error, OSError, ValueError) as exc:
        warnings.warn(
            f"the service runs {backing!r}, whose tokenizer is not available here ({exc}): embed_many plans with "
            "estimated token counts (pass tokenizer= a local copy of that model for exact counts)",
            RuntimeWarning,
            stacklevel=3,
        )
        return EstimatedTokenCounter()


__all__ = [
    "EstimatedTokenCounter",
    "ModelTokenCounter",
    "TokenCounter",
    "default_tokenizer_for",
    "discover_backing_model",
    "load_token_counter",
]
