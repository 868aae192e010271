"""The search index end to end: real e5-small vectors, real usearch graph, real SQLite, evaldata slices."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from embedding2.apps.documents import Document, read_documents
from embedding2.apps.encoders import EngineEncoder
from embedding2.apps.search import GRAPH_NAME, SearchError, SearchIndex
from embedding2.cli import main
from embedding2.evaluation.metrics import ndcg_at_k, top_k
from tests.apps.conftest import Retrieval


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, encoder: EngineEncoder, xquad: Retrieval) -> Path:
    path = tmp_path_factory.mktemp("search") / "xquad-en"
    with SearchIndex(path, encoder) as index:
        report = index.add(
            Document(i, t, "xquad.en", {"n": k}) for k, (i, t) in enumerate(zip(xquad.doc_ids, xquad.docs, strict=True))
        )
        assert report.added == len(xquad.docs) and report.chunks >= len(xquad.docs)
    return path


def test_hnsw_matches_exact_search(built: Path, encoder: EngineEncoder, xquad: Retrieval) -> None:
    with SearchIndex(built, encoder, create=False) as index:
        q = encoder.encode(xquad.queries, "query")
        ann = [[d for d, _, _ in row] for row in index.rank(q, 10)]
        exact = [[d for d, _, _ in row] for row in index.rank(q, 10, exact=True)]
        overlap = np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(ann, exact, strict=True)])
        assert overlap >= 0.99
        ndcg_ann, ndcg_exact = ndcg_at_k(ann, xquad.relevant), ndcg_at_k(exact, xquad.relevant)
        assert abs(ndcg_ann - ndcg_exact) <= 0.005
        assert ndcg_exact > 0.6  # zh questions find en passages far better than chance (10/40 docs)
        # exact chunk search agrees with a brute-force dot product over the stored vectors
        rows = index.db.execute("SELECT key, doc_id, vector FROM chunks").fetchall()
        matrix = np.stack([np.frombuffer(r[2], dtype="<f4") for r in rows])
        best_chunk = top_k(q, matrix, 1)[:, 0]
        assert [rows[j][1] for j in best_chunk] == [row[0] for row in exact]


def test_hits_carry_chunk_source_and_metadata(built: Path, encoder: EngineEncoder, xquad: Retrieval) -> None:
    with SearchIndex(built, encoder, create=False) as index:
        hits = index.search(xquad.queries[0], 5)
        assert len(hits) == 5
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert len({h.doc_id for h in hits}) == 5
        for h in hits:
            doc = xquad.docs[xquad.doc_ids.index(h.doc_id)]
            assert doc[h.start : h.end] == h.text
            assert h.source == "xquad.en" and h.meta["n"] == xquad.doc_ids.index(h.doc_id)
        # the score is the cosine of the query with the returned chunk
        v = encoder.encode([xquad.queries[0]], "query")[0] @ encoder.encode([hits[0].text], "document")[0]
        assert abs(v - hits[0].score) < 1e-3


def test_update_delete_persist_and_recover(tmp_path: Path, encoder: EngineEncoder, xquad: Retrieval) -> None:
    path = tmp_path / "ix"
    docs = [Document(i, t, "s") for i, t in zip(xquad.doc_ids[:12], xquad.docs[:12], strict=True)]
    with SearchIndex(path, encoder) as index:
        index.add(docs)
        again = index.add(docs)
        assert (again.added, again.updated, again.unchanged, again.chunks) == (0, 0, 12, 0)
        target = docs[3]
        before = index.search("Zebra crossings of Ulaanbaatar municipal budget", 1)[0]
        assert before.doc_id != target.id
        report = index.add([Document(target.id, "Zebra crossings of Ulaanbaatar municipal budget, 2031.", "s")])
        assert report.updated == 1
        assert index.search("Zebra crossings of Ulaanbaatar municipal budget", 1)[0].doc_id == target.id
        assert index.delete([docs[5].id, "no-such-id"]) == 1
        assert len(index) == 11 and index.get(docs[5].id) is None
        n_chunks = index.stats()["chunks"]
        assert len(index.graph) == n_chunks
        ranking = index.rank(encoder.encode(["Super Bowl", "Luther"], "query"), 11)
        assert all(docs[5].id not in [d for d, _, _ in row] for row in ranking)
    # reopened: same answers, graph loaded from disk
    with SearchIndex(path, encoder, create=False) as index:
        assert index.rank(encoder.encode(["Super Bowl", "Luther"], "query"), 11) == ranking
    # a crash between the SQLite commit and the graph save leaves an older generation: rebuilt on open
    (path / (GRAPH_NAME + ".gen")).write_text("0")
    with SearchIndex(path, encoder, create=False) as index:
        assert len(index.graph) == n_chunks
        assert index.rank(encoder.encode(["Super Bowl", "Luther"], "query"), 11) == ranking
    with sqlite3.connect(path / "index.sqlite") as db:  # SQLite is the source of truth
        assert db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == n_chunks


def test_wrong_vector_space_is_refused(built: Path, e5: object) -> None:
    wide = EngineEncoder(e5, served_model="embedding-2")  # 1024 dims
    with pytest.raises(SearchError, match="dims"):
        SearchIndex(built, wide, create=False)
    with pytest.raises(SearchError, match="no index"):
        SearchIndex(built.parent / "missing", wide, create=False)


def _write_corpus(folder: Path, xquad: Retrieval) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text(xquad.docs[0], encoding="utf-8")
    (folder / "b.md").write_text("# Title of B\n\n" + xquad.docs[1], encoding="utf-8")
    with (folder / "rows.jsonl").open("w", encoding="utf-8") as f:
        for i in range(2, 6):
            f.write(json.dumps({"_id": xquad.doc_ids[i], "text": xquad.docs[i], "lang": "en"}) + "\n")
    with (folder / "rows.csv").open("w", encoding="utf-8") as f:
        f.write('id,content,year\n"c1","Shanghai is a large city, on the coast.",2020\n')


def test_files_and_sync(tmp_path: Path, encoder: EngineEncoder, xquad: Retrieval) -> None:
    corpus = tmp_path / "corpus"
    _write_corpus(corpus, xquad)
    docs = list(read_documents([corpus]))
    assert len(docs) == 7
    by_id = {d.id: d for d in docs}
    assert by_id["c1"].meta == {"year": "2020"} and by_id["c1"].text.startswith("Shanghai")
    assert by_id[str((corpus / "b.md").resolve())].meta["title"] == "Title of B"
    with SearchIndex(tmp_path / "ix", encoder) as index:
        assert index.sync(read_documents([corpus]), [corpus]).added == 7
        (corpus / "a.txt").unlink()
        (corpus / "b.md").write_text("# Title of B\n\nChanged.", encoding="utf-8")
        report = index.sync(read_documents([corpus]), [corpus])
        assert (report.added, report.updated, report.unchanged, report.deleted) == (0, 1, 5, 1)
        assert len(index) == 6 and index.get(str((corpus / "a.txt").resolve())) is None


def test_cli_index_query_delete(
    tmp_path: Path, cache_dir: Path, xquad: Retrieval, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus"
    _write_corpus(corpus, xquad)
    ix = tmp_path / "ix"
    common = ["--index", str(ix), "--cache-dir", str(cache_dir)]
    assert main(["search", "index", str(corpus), *common]) == 0
    assert "7 added" in capsys.readouterr().out
    assert main(["search", "query", "上海是一座沿海城市", "-k", "3", "--json", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["hits"][0]["id"] == "c1" and len(out[0]["hits"]) == 3
    assert main(["search", "delete", "--source", str(corpus / "rows.csv"), *common]) == 0
    assert "1 documents deleted, 6 left" in capsys.readouterr().out
    assert main(["search", "query", "上海是一座沿海城市", "-k", "3", *common]) == 0
    assert "c1" not in capsys.readouterr().out
