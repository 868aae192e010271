"""Dataset discovery and loading: the four layouts, task selection, limits, and the real evaldata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedding2.evaluation.data import (
    DataError,
    discover,
    load_bitext,
    load_labelled,
    load_pairs,
    load_retrieval,
    retrieval_runs,
    select,
    train_split,
)


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")


def write_jsonl(path: Path, items: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    write_tsv(tmp_path / "pairs" / "test.tsv", ["sentence1", "sentence2", "label"], [["a", "b", "1"], ["c", "", "0"]])
    write_tsv(tmp_path / "pairs" / "validation.tsv", ["sentence1", "sentence2", "label"], [["x", "y", "0"]])
    write_tsv(tmp_path / "graded" / "test.tsv", ["sentence1", "sentence2", "score"], [["a", "b", "4.5"]])
    write_tsv(tmp_path / "bitext" / "test.tsv", ["id", "de", "en"], [["0", "Hallo", "Hello"], ["1", "Ja", "Yes"]])
    write_tsv(tmp_path / "labels" / "test.tsv", ["text", "label", "extra"], [["t1", "x", "q"], ["t2", "y", "q"]])
    write_tsv(tmp_path / "labels" / "train.tsv", ["text", "label"], [["t3", "x"]])
    ret = tmp_path / "ret"
    ret.mkdir()
    for lang in ("en", "de"):
        write_jsonl(ret / f"corpus.{lang}.jsonl", [{"_id": "d1", "title": "", "text": f"doc1 {lang}"}])
        write_jsonl(
            ret / f"queries.{lang}.jsonl",
            [{"_id": "q1", "text": f"query1 {lang}"}, {"_id": "q2", "text": "unjudged"}],
        )
    write_tsv(ret / "qrels.test.tsv", ["query-id", "corpus-id", "score"], [["q1", "d1", "1"]])
    (tmp_path / "notes").mkdir()  # a folder with no data is ignored
    return tmp_path


def test_discover_classifies_every_layout(root: Path) -> None:
    refs = {r.name: r for r in discover(root)}
    assert sorted(refs) == ["bitext", "graded", "labels", "pairs", "ret"]
    assert refs["pairs"].kind == "pair" and refs["pairs"].splits == ("test", "validation")
    assert refs["graded"].task_types == ("sts",)
    assert refs["bitext"].kind == "bitext" and refs["bitext"].languages == ("de", "en")
    assert refs["labels"].task_types == ("classification", "clustering")
    assert refs["ret"].kind == "retrieval" and refs["ret"].languages == ("de", "en")
    # one dataset folder given directly is a root of one
    assert [r.name for r in discover(root / "pairs")] == ["pairs"]


def test_unknown_columns_are_an_error(tmp_path: Path) -> None:
    write_tsv(tmp_path / "odd" / "test.tsv", ["a", "b", "c"], [["1", "2", "3"]])
    with pytest.raises(DataError, match="match no layout"):
        discover(tmp_path)


def test_select_by_name_type_glob_and_pair(root: Path) -> None:
    refs = discover(root)

    def names(spec: str | None) -> list[tuple[str, str]]:
        return [(r.name, t) for r, t in select(refs, spec)]

    assert len(names(None)) == 6  # labels gives two tasks
    assert names("sts") == [("graded", "sts"), ("pairs", "sts")]
    assert names("labels:clustering") == [("labels", "clustering")]
    assert names("bit*,pairs") == [("bitext", "bitext"), ("pairs", "sts")]
    with pytest.raises(DataError, match="matches nothing"):
        select(refs, "nope")


def test_loaders(root: Path) -> None:
    refs = {r.name: r for r in discover(root)}
    pairs = load_pairs(refs["pairs"])
    assert (pairs.sentences1, pairs.sentences2, pairs.gold, pairs.skipped) == (["a"], ["b"], [1.0], 1)
    assert load_pairs(refs["graded"]).gold == [4.5]
    bt = load_bitext(refs["bitext"])
    assert bt.languages == ("de", "en") and bt.texts1 == ["Hallo", "Ja"] and bt.texts2 == ["Hello", "Yes"]
    lab = load_labelled(refs["labels"])
    assert lab.texts == ["t1", "t2"] and lab.labels == ["x", "y"]
    assert train_split(refs["labels"], "test") == "train"
    assert train_split(refs["pairs"], "test") == "validation"
    assert retrieval_runs(refs["ret"]) == [("de", "de"), ("en", "en"), ("de", "en"), ("en", "de")]
    r = load_retrieval(refs["ret"], "de", "en")
    assert r.query_ids == ["q1"] and r.queries == ["query1 de"]  # the unjudged query is left out
    assert r.doc_ids == ["d1"] and r.docs == ["doc1 en"] and r.relevant == [{"d1": 1.0}]
    with pytest.raises(DataError, match="no split"):
        load_pairs(refs["graded"], "validation")


def test_limit_draws_a_repeatable_sample_in_file_order(tmp_path: Path) -> None:
    rows = [[f"t{i}", "a" if i < 50 else "b"] for i in range(100)]  # sorted by label, like thucnews
    write_tsv(tmp_path / "lab" / "test.tsv", ["text", "label"], rows)
    (ref,) = discover(tmp_path)
    first = load_labelled(ref, limit=20)
    assert first.texts == load_labelled(ref, limit=20).texts
    assert len(first.texts) == 20 and set(first.labels) == {"a", "b"}
    assert first.texts == sorted(first.texts, key=lambda t: int(t[1:]))


def test_real_evaldata_layouts(evaldata: Path) -> None:
    refs = {r.name: r for r in discover(evaldata)}
    assert {refs[n].kind for n in ("lcqmc", "bq", "atec", "pawsx-zh", "stsb-zh", "stsb-en")} == {"pair"}
    assert refs["tatoeba-cmn-eng"].languages == ("zh", "en")
    assert refs["xquad-retrieval"].languages == ("en", "zh")
    assert refs["cmrc2018-retrieval"].languages == ()
    assert refs["thucnews-titles"].kind == "labelled"
    assert len(load_pairs(refs["lcqmc"]).gold) == 12500
    xq = load_retrieval(refs["xquad-retrieval"], "zh", "en", limit=5)
    assert len(xq.queries) == 5 and all(any(d in xq.doc_ids for d in rel) for rel in xq.relevant)
    en = load_retrieval(refs["xquad-retrieval"], "en", "zh", limit=5)
    assert en.query_ids == xq.query_ids  # the same queries in both directions
