"""Semantic search: a persistent index of documents, chunked, embedded, searched by meaning.

An index is a folder with two files:

- ``index.sqlite``: the documents (id, source, content hash, metadata, text), their chunks (text,
  character offsets, vector as float32 bytes) and the index's settings (the encoder's vector space,
  dimensions, chunk size, HNSW parameters). SQLite is the source of truth.
- ``vectors.usearch``: an HNSW graph (usearch, inner product on unit vectors = cosine) over the chunk
  vectors, keyed by chunk id; ``vectors.usearch.gen`` names the SQLite generation it reflects.

Every change (add, update, delete) commits to SQLite first and bumps a generation counter, then updates
the graph and saves it with that generation. An index whose graph is missing or older than its SQLite
(a crash between the two steps) is rebuilt from the stored vectors when opened, as it is after many
deletions (HNSW keeps tombstones).

Documents are split by :func:`~embedding2.apps.chunking.chunk_text` (sentence boundaries, the model's
token limit) and embedded with ``input_type="document"``; queries with ``"query"``. A query fetches the
nearest chunks from the graph (or all chunks with ``exact=True``: brute-force cosine, the reference the
graph is measured against), keeps each document's best chunk, and returns the top ``k`` documents with
that chunk, its score and the document's source and metadata. Adding a document whose id exists
replaces it when its text or metadata changed and skips it otherwise.

One writer at a time per index (SQLite serialises writers; the graph file is rewritten on each change).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedding2.apps.chunking import chunk_text
from embedding2.apps.documents import Document
from embedding2.apps.encoders import Encoder, normalize_rows

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SQLITE_NAME = "index.sqlite"
GRAPH_NAME = "vectors.usearch"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    hash TEXT NOT NULL,
    meta TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source);
CREATE TABLE IF NOT EXISTS chunks (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
"""


class SearchError(ValueError):
    """An index that cannot be opened or used as asked."""


@dataclass(frozen=True)
class Hit:
    """One document found by a query, with its best-matching chunk."""

    doc_id: str
    score: float  # cosine of the query with the chunk
    text: str  # the matching chunk
    chunk: int  # its position in the document (0-based)
    start: int  # its character offsets in the document's text
    end: int
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.doc_id,
            "score": round(self.score, 6),
            "text": self.text,
            "chunk": self.chunk,
            "start": self.start,
            "end": self.end,
            "source": self.source,
            "meta": self.meta,
        }


@dataclass
class AddReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks: int = 0  # chunks embedded by this call

    def __str__(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.deleted} deleted, {self.chunks} chunks embedded"
        )


def _hash(doc: Document) -> str:
    h = hashlib.sha256(doc.text.encode())
    h.update(json.dumps(doc.meta, sort_keys=True, ensure_ascii=False).encode())
    h.update(doc.source.encode())
    return h.hexdigest()[:32]


class SearchIndex:
    """A persistent chunk index (usearch HNSW + SQLite) over documents, queried by meaning."""

    def __init__(
        self,
        path: str | Path,
        encoder: Encoder,
        *,
        chunk_tokens: int | None = None,
        max_tokens: int | None = None,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 128,
        create: bool = True,
    ) -> None:
        """Open the index in folder ``path`` (created when ``create``), embedding with ``encoder``.

        ``chunk_tokens`` (default 256) is the chunk size aimed at, ``max_tokens`` (default: the
        encoder's limit) the hard one; both are stored with a new index and read back from an
        existing one unless given again.
        """
        self.path = Path(path)
        db_path = self.path / SQLITE_NAME
        if not db_path.is_file():
            if not create:
                raise SearchError(f"no index at {self.path} (create one with `embedding2 search index`)")
            self.path.mkdir(parents=True, exist_ok=True)
        self.encoder = encoder
        self.db = sqlite3.connect(str(db_path), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(_SCHEMA)
        stored = dict(self.db.execute("SELECT name, value FROM settings").fetchall())
        if stored:
            if int(stored["version"]) != SCHEMA_VERSION:
                raise SearchError(f"{db_path}: index format {stored['version']}, this build reads {SCHEMA_VERSION}")
            if int(stored["dims"]) != encoder.dims:
                raise SearchError(
                    f"{self.path} was built with {stored['encoder']} ({stored['dims']} dims); the encoder given has "
                    f"{encoder.dims} dims ({encoder.key}): open it with the same model or endpoint"
                )
            if stored["encoder"] != encoder.key:
                log.warning("index %s was built with %s, queried with %s", self.path, stored["encoder"], encoder.key)
        settings = {
            "version": str(SCHEMA_VERSION),
            "encoder": stored.get("encoder", encoder.key),
            "dims": str(encoder.dims),
            "chunk_tokens": str(chunk_tokens or stored.get("chunk_tokens", 256)),
            "max_tokens": str(max_tokens or stored.get("max_tokens", encoder.max_tokens)),
            "connectivity": stored.get("connectivity", str(connectivity)),
            "expansion_add": str(expansion_add),
            "generation": stored.get("generation", "0"),
            "removed": stored.get("removed", "0"),
        }
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO settings VALUES (?, ?)", list(settings.items()))
        self.dims = encoder.dims
        self.chunk_tokens = int(settings["chunk_tokens"])
        self.max_tokens = min(int(settings["max_tokens"]), encoder.max_tokens)
        self.connectivity = int(settings["connectivity"])
        self.expansion_add = expansion_add
        self.expansion_search = expansion_search
        self._matrix: tuple[int, np.ndarray, np.ndarray] | None = None  # (generation, keys, vectors)
        self._doc_of: tuple[int, dict[int, str]] | None = None
        self.graph = self._open_graph()

    # ------------------------------------------------------------------ settings and the graph
    def _setting(self, name: str) -> str:
        row = self.db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return str(row[0])

    @property
    def generation(self) -> int:
        return int(self._setting("generation"))

    def _new_graph(self) -> Any:
        from usearch.index import Index

        return Index(
            ndim=self.dims,
            metric="ip",
            dtype="f32",
            connectivity=self.connectivity,
            expansion_add=self.expansion_add,
            expansion_search=self.expansion_search,
        )

    def _open_graph(self) -> Any:
        from usearch.index import Index

        graph_path = self.path / GRAPH_NAME
        gen_path = self.path / (GRAPH_NAME + ".gen")
        n_chunks = self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        if graph_path.is_file() and gen_path.is_file() and gen_path.read_text().strip() == str(self.generation):
            graph: Any = Index.restore(str(graph_path))
            if graph is not None and len(graph) == n_chunks and graph.ndim == self.dims:
                graph.expansion_search = self.expansion_search
                graph.expansion_add = self.expansion_add
                return graph
        if n_chunks:
            log.info("rebuilding the HNSW graph of %s from %d stored vectors", self.path, n_chunks)
        return self.rebuild()

    def rebuild(self) -> Any:
        """A fresh HNSW graph from the vectors in SQLite (drops the tombstones of deleted chunks)."""
        graph = self._new_graph()
        cursor = self.db.execute("SELECT key, vector FROM chunks ORDER BY key")
        while rows := cursor.fetchmany(8192):
            keys = np.array([r[0] for r in rows], dtype=np.uint64)
            vectors = np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])
            graph.add(keys, vectors)
        self.graph = graph
        with self.db:
            self.db.execute("UPDATE settings SET value = '0' WHERE name = 'removed'")
        self._save_graph()
        return graph

    def _save_graph(self) -> None:
        graph_path = self.path / GRAPH_NAME
        tmp = self.path / (GRAPH_NAME + ".tmp")
        self.graph.save(str(tmp))
        os.replace(tmp, graph_path)
        gen_tmp = self.path / (GRAPH_NAME + ".gen.tmp")
        gen_tmp.write_text(str(self.generation))
        os.replace(gen_tmp, self.path / (GRAPH_NAME + ".gen"))

    def _bump(self, removed: int) -> None:
        self.db.execute("UPDATE settings SET value = CAST(value AS INTEGER) + 1 WHERE name = 'generation'")
        self.db.execute("UPDATE settings SET value = CAST(value AS INTEGER) + ? WHERE name = 'removed'", (removed,))

    def _after_change(self, removed_keys: list[int], new_keys: list[int], new_vectors: np.ndarray | None) -> None:
        if removed_keys:
            self.graph.remove(np.array(removed_keys, dtype=np.uint64))
        if new_keys:
            assert new_vectors is not None
            self.graph.add(np.array(new_keys, dtype=np.uint64), new_vectors)
        removed = int(self._setting("removed"))
        if removed > max(1000, len(self.graph)):  # many tombstones: a fresh graph searches better
            self.rebuild()
        else:
            self._save_graph()

    # ------------------------------------------------------------------ writing
    def add(
        self,
        docs: Iterable[Document],
        *,
        batch_docs: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> AddReport:
        """Add documents, replacing those whose id exists with changed text, source or metadata."""
        report = AddReport()
        batch: dict[str, Document] = {}
        for doc in docs:
            batch[doc.id] = doc  # the last of two documents with one id wins
            if len(batch) >= batch_docs:
                self._add_batch(list(batch.values()), report)
                if progress is not None:
                    progress(len(batch))
                batch = {}
        if batch:
            self._add_batch(list(batch.values()), report)
            if progress is not None:
                progress(len(batch))
        return report

    def _add_batch(self, docs: list[Document], report: AddReport) -> None:
        todo: list[tuple[Document, str, bool]] = []
        for doc in docs:
            if not doc.text.strip():
                continue
            h = _hash(doc)
            row = self.db.execute("SELECT hash FROM documents WHERE id = ?", (doc.id,)).fetchone()
            if row is not None and row[0] == h:
                report.unchanged += 1
                continue
            todo.append((doc, h, row is not None))
        if not todo:
            return
        chunked = [
            chunk_text(
                doc.text,
                lambda texts: self.encoder.count_tokens(texts, "document"),
                max_tokens=self.max_tokens,
                target_tokens=self.chunk_tokens,
            )
            for doc, _, _ in todo
        ]
        texts = [c.text for chunks in chunked for c in chunks]
        vectors = normalize_rows(self.encoder.encode(texts, "document")) if texts else None
        removed: list[int] = []
        new_keys: list[int] = []
        with self.db:
            row_i = 0
            for (doc, h, exists), chunks in zip(todo, chunked, strict=True):
                if exists:
                    removed.extend(k for (k,) in self.db.execute("SELECT key FROM chunks WHERE doc_id = ?", (doc.id,)))
                    self.db.execute("DELETE FROM documents WHERE id = ?", (doc.id,))
                    report.updated += 1
                else:
                    report.added += 1
                self.db.execute(
                    "INSERT INTO documents (id, source, hash, meta, text) VALUES (?, ?, ?, ?, ?)",
                    (doc.id, doc.source, h, json.dumps(doc.meta, ensure_ascii=False), doc.text),
                )
                for ordinal, c in enumerate(chunks):
                    assert vectors is not None
                    cur = self.db.execute(
                        "INSERT INTO chunks (doc_id, ord, start, end, tokens, text, vector) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (doc.id, ordinal, c.start, c.end, c.tokens, c.text, vectors[row_i].astype("<f4").tobytes()),
                    )
                    assert cur.lastrowid is not None
                    new_keys.append(int(cur.lastrowid))
                    row_i += 1
            self._bump(len(removed))
        report.chunks += len(texts)
        self._after_change(removed, new_keys, vectors)

    def delete(self, doc_ids: Iterable[str]) -> int:
        """Delete documents by id; returns how many existed."""
        ids = list(dict.fromkeys(doc_ids))
        removed: list[int] = []
        deleted = 0
        with self.db:
            for doc_id in ids:
                keys = [k for (k,) in self.db.execute("SELECT key FROM chunks WHERE doc_id = ?", (doc_id,))]
                cur = self.db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
                if cur.rowcount:
                    deleted += 1
                    removed.extend(keys)
            if deleted:
                self._bump(len(removed))
        if deleted:
            self._after_change(removed, [], None)
        return deleted

    def ids_from(self, source: str | Path) -> list[str]:
        """Ids of the documents read from file ``source`` or from any file under folder ``source``."""
        src = str(Path(source).resolve())
        rows = self.db.execute(
            "SELECT id FROM documents WHERE source = ? OR substr(source, 1, ?) = ?",
            (src, len(src) + 1, src.rstrip(os.sep) + os.sep),
        )
        return [r[0] for r in rows]

    def sync(self, docs: Iterable[Document], sources: Sequence[str | Path], **kwargs: Any) -> AddReport:
        """Add ``docs`` read from ``sources``, then delete the documents of those sources not among them
        (files removed or rows dropped since the last run)."""
        seen: set[str] = set()

        def tracked() -> Iterable[Document]:
            for doc in docs:
                seen.add(doc.id)
                yield doc

        report = self.add(tracked(), **kwargs)
        stale = [doc_id for src in sources for doc_id in self.ids_from(src) if doc_id not in seen]
        report.deleted += self.delete(stale)
        return report

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0])

    def get(self, doc_id: str) -> Document | None:
        row = self.db.execute("SELECT id, text, source, meta FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return None if row is None else Document(row[0], row[1], row[2], json.loads(row[3]))

    def stats(self) -> dict[str, Any]:
        n_chunks = self.db.execute("SELECT COUNT(*), COALESCE(SUM(tokens), 0) FROM chunks").fetchone()
        settings = dict(self.db.execute("SELECT name, value FROM settings").fetchall())
        return {
            "path": str(self.path),
            "documents": len(self),
            "chunks": int(n_chunks[0]),
            "chunk_tokens_total": int(n_chunks[1]),
            "graph_size": len(self.graph),
            **{k: settings[k] for k in ("encoder", "dims", "chunk_tokens", "max_tokens", "connectivity", "generation")},
        }

    def _doc_map(self) -> dict[int, str]:
        gen = self.generation
        if self._doc_of is None or self._doc_of[0] != gen:
            self._doc_of = (gen, dict(self.db.execute("SELECT key, doc_id FROM chunks").fetchall()))
        return self._doc_of[1]

    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        gen = self.generation
        if self._matrix is None or self._matrix[0] != gen:
            rows = self.db.execute("SELECT key, vector FROM chunks ORDER BY key").fetchall()
            keys = np.array([r[0] for r in rows], dtype=np.int64)
            vectors = (
                np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])
                if rows
                else np.zeros((0, self.dims), dtype=np.float32)
            )
            self._matrix = (gen, keys, vectors)
        return self._matrix[1], self._matrix[2]

    def _candidates(self, q: np.ndarray, fetch: int, exact: bool) -> tuple[np.ndarray, np.ndarray]:
        """(keys, scores) of the ``fetch`` nearest chunks of each query row, best first; -1 pads."""
        if exact:
            keys, vectors = self._all_vectors()
            fetch = min(fetch, len(keys))
            out_k = np.full((q.shape[0], fetch), -1, dtype=np.int64)
            out_s = np.full((q.shape[0], fetch), -np.inf, dtype=np.float32)
            for start in range(0, q.shape[0], 256):
                sims = q[start : start + 256] @ vectors.T
                order = np.argsort(-sims, axis=1, kind="stable")[:, :fetch]
                out_k[start : start + 256] = keys[order]
                out_s[start : start + 256] = np.take_along_axis(sims, order, axis=1)
            return out_k, out_s
        self.graph.expansion_search = max(self.expansion_search, fetch)
        matches = self.graph.search(q, fetch)
        keys = np.asarray(matches.keys, dtype=np.int64).reshape(q.shape[0], -1)
        scores = (1.0 - np.asarray(matches.distances, dtype=np.float32)).reshape(q.shape[0], -1)
        counts = np.asarray(matches.counts).reshape(-1) if hasattr(matches, "counts") else None
        if counts is not None:
            for i, c in enumerate(counts):
                keys[i, int(c) :] = -1
                scores[i, int(c) :] = -np.inf
        return keys, scores

    def rank(
        self, query_vectors: np.ndarray, k: int = 10, *, exact: bool = False
    ) -> list[list[tuple[str, int, float]]]:
        """For each query vector: up to ``k`` (doc id, chunk key, score), best document first.

        A document scores as its best chunk. Candidates are fetched in growing rounds until ``k``
        distinct documents are found or every chunk has been seen.
        """
        q = normalize_rows(np.asarray(query_vectors, dtype=np.float32))
        n_chunks = len(self.graph) if not exact else len(self._all_vectors()[0])
        if n_chunks == 0 or k <= 0:
            return [[] for _ in range(q.shape[0])]
        doc_of = self._doc_map()
        results: list[list[tuple[str, int, float]] | None] = [None] * q.shape[0]
        todo = list(range(q.shape[0]))
        fetch = min(n_chunks, max(4 * k, 40))
        while todo:
            keys, scores = self._candidates(q[todo], fetch, exact)
            still = []
            for row, qi in enumerate(todo):
                best: dict[str, tuple[int, float]] = {}
                for key, score in zip(keys[row], scores[row], strict=True):
                    if key < 0:
                        continue
                    doc = doc_of[int(key)]
                    if doc not in best:
                        best[doc] = (int(key), float(score))
                if len(best) < k and fetch < n_chunks:
                    still.append(qi)
                    continue
                ranked = sorted(best.items(), key=lambda item: -item[1][1])[:k]
                results[qi] = [(doc, key, score) for doc, (key, score) in ranked]
            todo = still
            fetch = min(n_chunks, fetch * 4)
        return [r or [] for r in results]

    def search(self, query: str | Sequence[str], k: int = 10, *, exact: bool = False) -> Any:
        """The top ``k`` documents for ``query`` (a list of :class:`Hit`), or for each of a list of queries."""
        single = isinstance(query, str)
        queries = [query] if isinstance(query, str) else list(query)
        q = self.encoder.encode(queries, "query")
        hits = [self.hits(row) for row in self.rank(q, k, exact=exact)]
        return hits[0] if single else hits

    def hits(self, ranked: list[tuple[str, int, float]]) -> list[Hit]:
        """:class:`Hit` objects (chunk text, offsets, source, metadata) for one ranking from :meth:`rank`."""
        out = []
        for doc_id, key, score in ranked:
            row = self.db.execute(
                "SELECT c.ord, c.start, c.end, c.text, d.source, d.meta FROM chunks c JOIN documents d "
                "ON d.id = c.doc_id WHERE c.key = ?",
                (key,),
            ).fetchone()
            if row is not None:
                out.append(Hit(doc_id, score, row[3], row[0], row[1], row[2], row[4], json.loads(row[5])))
        return out

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["AddReport", "Hit", "SearchError", "SearchIndex"]
