"""The SDK's optional on-disk embedding cache: one SQLite file, so that re-running a job never pays twice.

A vector is stored under ``sha256(model, dimensions, input_type, text)`` as little-endian float32
bytes; ``dimensions`` is the one the service used (``None`` is resolved to the model's default before
keying, so ``dimensions=None`` and ``dimensions=1024`` share entries for embedding-2). A cache file
holds the vectors of one service: point two services that answer the same model id differently
(the hosted service, a self-hosted one on another backing model) at different files.

Rows are committed after every request's answer, so an interrupted job keeps what it paid for. The
file is safe for several threads of one process (one connection behind a lock) and for several
processes (SQLite's WAL mode and its busy timeout).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    key BLOB PRIMARY KEY,
    dims INTEGER NOT NULL,
    vector BLOB NOT NULL
) WITHOUT ROWID
"""
_CHUNK = 500  # SQLite's default limit on host parameters is 999 (older builds)


class EmbeddingCache:
    """Vectors by (model, dimensions, input_type, text) in a SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model: str, dimensions: int | None, input_type: str | None, text: str) -> bytes:
        """The key of one text's vector (a sha256 digest of the four, JSON-encoded so none can collide)."""
        raw = json.dumps([model, dimensions, input_type, text], ensure_ascii=False)
        return hashlib.sha256(raw.encode("utf-8")).digest()

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``keys`` (float32, read-only views are copied)."""
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(unique), _CHUNK):
                part = unique[i : i + _CHUNK]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(f"SELECT key, dims, vector FROM embeddings WHERE key IN ({marks})", part)
                for key, dims, blob in rows:
                    vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
                    if vec.shape[0] == dims:
                        found[bytes(key)] = vec
        self.hits += len(found)
        self.misses += len(unique) - len(found)
        return found

    def put_many(self, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        """Store vectors (one transaction; an existing key is overwritten)."""
        rows = [(key, int(vec.shape[0]), np.ascontiguousarray(vec, dtype="<f4").tobytes()) for key, vec in items]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO embeddings (key, dims, vector) VALUES (?, ?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()
        return int(n)

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM embeddings")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_cache(cache: str | Path | EmbeddingCache | None) -> tuple[EmbeddingCache | None, bool]:
    """The cache to use and whether the caller opened it (and so must close it)."""
    if cache is None or isinstance(cache, EmbeddingCache):
        return cache, False
    return EmbeddingCache(cache), True


__all__ = ["EmbeddingCache", "open_cache"]
