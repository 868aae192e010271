"""Backends under evaluation, and the path of every text from a dataset to a vector.

Two backends share one interface, :class:`TextEncoder`:

- :class:`EngineEncoder`: an in-process :class:`~embedding2.engine.embedder.Embedder` (a pack name or a
  model folder), native vectors;
- :class:`HttpEncoder`: any Embedding-2/OpenAI-compatible ``POST {base_url}/embeddings`` endpoint
  (embedding2's own service, the hosted Embedding-2, a peer server), ``encoding_format=base64``.

Prefixes. Every text is embedded as one of three kinds: ``symmetric`` (both sides of a similarity pair,
bitext, classification and clustering texts), ``query`` and ``document`` (retrieval). The engine applies
the model's own prompts: for e5 ``symmetric`` and ``query`` get ``query: `` and ``document`` gets
``passage: ``; minilm has none. Over HTTP the kind travels as the optional ``input_type`` field
(omitted for ``symmetric``), which embedding2's service maps to the same prompts and other services
ignore; for a peer that applies no prompts, ``--query-prefix``/``--document-prefix`` add them client-side.

Long texts. A text over the backend's token limit is cut to the longest *character* prefix that fits,
found by the same bisection in every backend (the engine counts tokens locally; over HTTP the server's
token-limit error is the oracle, or, given the served model's tokenizer, the local count). Engine and
service therefore embed identical strings.

:func:`embed_texts` deduplicates texts (pair datasets repeat sentences), embeds the missing ones in
length-sorted chunks and keeps every vector in a :class:`VectorStore` (SQLite), so a run that is
interrupted resumes where it stopped.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from embedding2.evaluation.metrics import normalize

log = logging.getLogger(__name__)

Kind = Literal["symmetric", "query", "document"]
KINDS: tuple[Kind, ...] = ("symmetric", "query", "document")


class EncoderError(RuntimeError):
    """The backend failed in a way that retrying will not fix."""


class TooLong(Exception):
    """The backend refused a text for its length."""


def longest_fitting_prefix(text: str, fits: Callable[[str], bool]) -> int:
    """Length of the longest prefix of ``text`` that ``fits``, by bisection (``text`` itself does not fit).

    Deterministic: the same ``fits`` answers give the same probes and the same cut in every backend.
    """
    lo, hi = 0, len(text)  # text[:lo] fits (0: nothing yet), text[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(text[:mid]):
            lo = mid
        else:
            hi = mid
    if lo == 0:
        raise EncoderError(f"not even the first character of a text fits the token limit: {text[:40]!r}")
    return lo


class TextEncoder(ABC):
    """A backend that turns texts of one kind into vectors (one row per text, any scale)."""

    key: str  # identity of the vectors (model, weights, prefixes): the cache key
    label: str  # short human-readable name for reports
    backend: str  # "engine" or "http"

    def __init__(self) -> None:
        self.truncated = 0  # texts cut to fit the token limit so far

    @abstractmethod
    def encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        """Vectors of ``texts``, cutting any that is over the token limit."""

    @abstractmethod
    def prefix(self, kind: Kind) -> str:
        """What is prepended to a text of ``kind`` (a description when the server decides)."""

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "label": self.label,
            "key": self.key,
            "prefixes": {k: self.prefix(k) for k in KINDS},
        }

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the encoder holds."""


# ---------------------------------------------------------------------------------------------- engine
class TokenFitter:
    """Cuts texts over a model's token limit to their longest fitting prefix, with the model's tokenizer.

    The engine uses it for every text; the HTTP backend can use it too (``--tokenizer``) when the
    served model is known, which saves the probe requests and gives the very same cut.
    """

    def __init__(self, spec: Any, limit: int | None = None) -> None:
        from embedding2.engine.tokenization import TextTokenizer

        self.spec = spec
        self.limit = int(limit or spec.max_tokens)
        self._tokenizer = TextTokenizer(spec)

    @classmethod
    def for_model(cls, name: str, cache_dir: Path) -> TokenFitter:
        from embedding2.models.folder import load_spec
        from embedding2.models.registry import resolve_model_folder

        return cls(load_spec(resolve_model_folder(name, cache_dir), name=name))

    def count(self, texts: list[str], input_type: Literal["query", "document"] | None) -> list[int]:
        return [int(n) for n in self._tokenizer.count(texts, input_type=input_type)]

    def fit(self, texts: list[str], input_type: Literal["query", "document"] | None) -> tuple[list[str], int]:
        """(``texts`` with each one over the limit cut, how many were cut)."""
        out = list(texts)
        cut = 0
        for i, n in enumerate(self.count(texts, input_type)):
            if n > self.limit:

                def fits(candidate: str) -> bool:
                    return self.count([candidate], input_type)[0] <= self.limit

                out[i] = texts[i][: longest_fitting_prefix(texts[i], fits)]
                cut += 1
        return out, cut


class EngineEncoder(TextEncoder):
    """The in-process engine on its native vectors (``model=None``), the model's own prompts.

    Built from settings, the engine itself starts on the first text to embed, so a run answered
    entirely from the cache never loads the model.
    """

    backend = "engine"

    def __init__(self, embedder: Any = None, *, settings: Any = None) -> None:
        super().__init__()
        if embedder is None and settings is None:
            raise ValueError("EngineEncoder needs an Embedder or Settings")
        self._embedder = embedder
        self._owns = embedder is None
        self.settings = settings if settings is not None else embedder.settings
        if embedder is not None:
            spec = embedder.spec
        else:
            from embedding2.models.folder import load_spec
            from embedding2.models.registry import resolve_model_folder

            name = str(self.settings.model)
            spec = load_spec(resolve_model_folder(name, self.settings.cache_dir), name=name)
        self.spec = spec
        self.label = spec.name
        ident = f"{spec.name}|{Path(spec.path).resolve()}|{self.settings.backend}|q{int(self.settings.quantize)}"
        if self.settings.backend == "torch":
            ident += f"|{self.settings.torch_dtype}"
        self.key = "engine|" + ident
        self.limit = int(spec.max_tokens)
        self._fitter: TokenFitter | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> EngineEncoder:
        return cls(settings=settings)

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from embedding2.engine.embedder import Embedder

            self._embedder = Embedder(settings=self.settings)
        return self._embedder

    @staticmethod
    def _input_type(kind: Kind) -> Literal["query", "document"] | None:
        return None if kind == "symmetric" else kind  # None: the model's default_input_type

    def prefix(self, kind: Kind) -> str:
        return str(self.spec.prefix(self._input_type(kind)))

    def fit(self, texts: list[str], kind: Kind) -> list[str]:
        """``texts`` with each one over the token limit cut to its longest fitting prefix."""
        if self._fitter is None:
            self._fitter = TokenFitter(self.spec, self.limit)
        out, cut = self._fitter.fit(texts, self._input_type(kind))
        self.truncated += cut
        return out

    def encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        fitted = self.fit(texts, kind)
        result = self.embedder.embed(fitted, model=None, input_type=self._input_type(kind))
        return np.asarray(result.vectors, dtype=np.float32)

    def close(self) -> None:
        if self._owns and self._embedder is not None:
            self._embedder.close()
            self._embedder = None


# ---------------------------------------------------------------------------------------------- http
_TOO_LONG_CODES = {"1261"}
_TOO_LONG_WORDS = re.compile(r"token|too long|length|context", re.IGNORECASE)


class HttpEncoder(TextEncoder):
    """An Embedding-2/OpenAI-compatible ``/embeddings`` endpoint.

    Requests stay inside the Embedding-2 limits without a tokenizer: at most ``max_items`` texts and
    an estimated ``2 * characters + 16`` tokens per text within ``max_request_tokens``; a request the
    server still finds too long is split in halves, a single text too long is cut (see module doc).
    429 and 5xx answers are retried with exponential backoff (honouring ``Retry-After``).
    """

    backend = "http"

    def __init__(
        self,
        base_url: str,
        model: str = "embedding-2",
        *,
        api_key: str | None = None,
        dimensions: int | None = None,
        send_input_type: bool = True,
        query_prefix: str = "",
        document_prefix: str = "",
        concurrency: int = 4,
        max_items: int = 64,
        max_request_tokens: int = 8192,
        timeout_s: float = 300.0,
        max_retries: int = 8,
        label: str | None = None,
        fitter: TokenFitter | None = None,
        client: Any = None,
    ) -> None:
        import httpx

        super().__init__()
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.dimensions = dimensions
        self.send_input_type = send_input_type
        self.prefixes: dict[Kind, str] = {"symmetric": query_prefix, "query": query_prefix, "document": document_prefix}
        self.concurrency = max(1, concurrency)
        self.max_items = max(1, max_items)
        self.max_request_tokens = max_request_tokens
        self.max_retries = max_retries
        self.fitter = fitter
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(headers=headers, timeout=timeout_s)
        self._owns_client = client is None
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="eval-http")
        self._lock = threading.Lock()
        self.requests = 0
        # the cache cannot see which model serves a URL: a label names it (and keeps caches apart)
        self.label = label or f"{model}@{base_url.rstrip('/')}"
        self.key = "http|" + "|".join(
            [self.url, model, str(dimensions), str(int(send_input_type)), query_prefix, document_prefix, label or ""]
        )

    def prefix(self, kind: Kind) -> str:
        client_side = self.prefixes[kind]
        if self.send_input_type and kind != "symmetric":
            return f"{client_side}<server prompt for input_type={kind}>"
        return client_side or ("<server default>" if kind == "symmetric" else "")

    # -- one request
    def _post(self, texts: list[str], kind: Kind) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "base64"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        if self.send_input_type and kind != "symmetric":
            body["input_type"] = kind
        delay = 0.5
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self.requests += 1
            try:
                resp = self._client.post(self.url, json=body)
            except Exception as exc:  # connection reset, timeout: retried like a 5xx
                if attempt == self.max_retries:
                    raise EncoderError(f"POST {self.url} failed: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
                continue
            if resp.status_code == 200:
                return self._vectors(resp.json(), len(texts))
            code, message = _error_of(resp)
            if resp.status_code in (400, 413, 422) and (code in _TOO_LONG_CODES or _TOO_LONG_WORDS.search(message)):
                raise TooLong(message)
            if resp.status_code in (408, 409, 429) or resp.status_code >= 500:
                if attempt == self.max_retries:
                    raise EncoderError(f"POST {self.url}: HTTP {resp.status_code} {code}: {message}")
                retry_after = resp.headers.get("retry-after")
                wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else delay
                time.sleep(min(wait, 30.0))
                delay = min(delay * 2, 8.0)
                continue
            raise EncoderError(f"POST {self.url}: HTTP {resp.status_code} {code}: {message}")
        raise EncoderError("unreachable")  # pragma: no cover

    @staticmethod
    def _vectors(payload: dict[str, Any], n: int) -> np.ndarray:
        data = sorted(payload["data"], key=lambda item: item["index"])
        if len(data) != n:
            raise EncoderError(f"asked for {n} embeddings, got {len(data)}")
        rows = []
        for item in data:
            emb = item["embedding"]
            if isinstance(emb, str):
                rows.append(np.frombuffer(base64.b64decode(emb), dtype="<f4"))
            else:
                rows.append(np.asarray(emb, dtype=np.float32))
        return np.stack(rows).astype(np.float32)

    # -- one text, one batch
    def _embed_one(self, text: str, kind: Kind) -> np.ndarray:
        try:
            return self._post([text], kind)
        except TooLong:
            pass
        found: dict[str, np.ndarray] = {}

        def fits(candidate: str) -> bool:
            try:
                found[candidate] = self._post([candidate], kind)
                return True
            except TooLong:
                return False

        cut = text[: longest_fitting_prefix(text, fits)]
        with self._lock:
            self.truncated += 1
        return found[cut]

    def _embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        if len(texts) == 1:
            return self._embed_one(texts[0], kind)
        try:
            return self._post(texts, kind)
        except TooLong:
            half = len(texts) // 2
            return np.concatenate([self._embed_batch(texts[:half], kind), self._embed_batch(texts[half:], kind)])

    def _requests(self, texts: list[str]) -> list[tuple[int, int]]:
        """[start, end) ranges of ``texts`` that make one request each."""
        ranges = []
        start, used = 0, 0
        for i, t in enumerate(texts):
            est = 2 * len(t) + 16
            if i > start and (i - start >= self.max_items or used + est > self.max_request_tokens):
                ranges.append((start, i))
                start, used = i, 0
            used += est
        if start < len(texts):
            ranges.append((start, len(texts)))
        return ranges

    def encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        prefixed = [self.prefixes[kind] + t for t in texts]
        if self.fitter is not None:  # cut locally what the server would refuse (it still has the last word)
            input_type = kind if self.send_input_type and kind != "symmetric" else None
            prefixed, cut = self.fitter.fit(prefixed, input_type)
            with self._lock:
                self.truncated += cut
        ranges = self._requests(prefixed)
        futures = [self._pool.submit(self._embed_batch, prefixed[a:b], kind) for a, b in ranges]
        return np.concatenate([f.result() for f in futures])

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._owns_client:
            self._client.close()


def _error_of(resp: Any) -> tuple[str, str]:
    try:
        err = resp.json().get("error", {})
        if isinstance(err, dict):
            return str(err.get("code", "")), str(err.get("message", ""))
        return "", str(err)
    except Exception:
        return "", resp.text[:500]


# ---------------------------------------------------------------------------------------------- cache
class VectorStore:
    """Vectors of one encoder on disk (SQLite), keyed by kind and text; safe to stop at any time."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path))
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
            self._db.commit()

    @staticmethod
    def _key(kind: Kind, text: str) -> bytes:
        return hashlib.sha256(f"{kind}\x00{text}".encode()).digest()[:20]

    def get_many(self, kind: Kind, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if self._db is None:
            return {}
        keys = {self._key(kind, t): t for t in texts}
        found: dict[str, np.ndarray] = {}
        items = list(keys)
        for start in range(0, len(items), 500):
            chunk = items[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk):
                found[keys[bytes(key)]] = np.frombuffer(blob, dtype="<f4")
        return found

    def put_many(self, kind: Kind, texts: Sequence[str], vectors: np.ndarray) -> None:
        if self._db is None:
            return
        rows = [
            (self._key(kind, t), np.ascontiguousarray(v, dtype="<f4").tobytes())
            for t, v in zip(texts, vectors, strict=True)
        ]
        self._db.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows)
        self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def store_path(cache_dir: Path, encoder: TextEncoder) -> Path:
    """Where ``encoder``'s vectors are kept under ``cache_dir``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder.label)[:60]
    digest = hashlib.sha256(encoder.key.encode()).hexdigest()[:12]
    return cache_dir / "vectors" / f"{slug}-{digest}.sqlite"


def embed_texts(
    encoder: TextEncoder,
    texts: Sequence[str],
    kind: Kind,
    store: VectorStore | None = None,
    *,
    chunk_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """L2-normalised vectors of ``texts`` (one row per text, duplicates embedded once, cache reused)."""
    unique = list(dict.fromkeys(texts))
    vectors: dict[str, np.ndarray] = store.get_many(kind, unique) if store is not None else {}
    if progress is not None and vectors:
        progress(len(vectors))
    missing = sorted((t for t in unique if t not in vectors), key=len)  # similar lengths batch well
    for start in range(0, len(missing), chunk_size):
        chunk = missing[start : start + chunk_size]
        out = normalize(encoder.encode(chunk, kind))
        if store is not None:
            store.put_many(kind, chunk, out)
        vectors.update(zip(chunk, out, strict=True))
        if progress is not None:
            progress(len(chunk))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([vectors[t] for t in texts]).astype(np.float32)
