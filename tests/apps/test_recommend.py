"""Recommendation end to end on thucnews titles: category-interest users, MMR, recency, more like this."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedding2.apps.lexical import tfidf_matrix
from embedding2.apps.recommend import Recommender, mmr
from embedding2.cli import main
from tests.apps.conftest import Labelled


def _users(labels: list[str], n_history: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    return [
        (c, [str(i) for i in rng.choice(np.flatnonzero(y == c), n_history, replace=False)])
        for c in sorted(set(labels))
        for _ in range(5)
    ]


def _precision(rec: Recommender, labels: list[str], users: list[tuple[str, list[str]]], **kw: object) -> float:
    hits = []
    for c, hist in users:
        got = rec.recommend(hist, 10, **kw)  # type: ignore[arg-type]
        assert len(got) == 10 and not set(hist) & {r.id for r in got}
        hits.append(np.mean([labels[int(r.id)] == c for r in got]))
    return float(np.mean(hits))


def test_precision_beats_tfidf_and_random(titles: Labelled) -> None:
    ids = [str(i) for i in range(len(titles.texts))]
    users = _users(titles.labels, 8)
    emb = _precision(Recommender(ids, titles.vectors), titles.labels, users)
    lex = _precision(Recommender(ids, tfidf_matrix(titles.texts)), titles.labels, users)
    chance = 1 / len(set(titles.labels))
    assert emb > lex and emb > 3 * chance, (emb, lex, chance)


def test_mmr_diversifies(titles: Labelled) -> None:
    ids = [str(i) for i in range(len(titles.texts))]
    rec = Recommender(ids, titles.vectors)
    hist = ids[:5]
    plain = rec.recommend(hist, 10)
    diverse = rec.recommend(hist, 10, mmr_lambda=0.5, pool=60)
    assert rec.diversity([r.id for r in diverse]) > rec.diversity([r.id for r in plain])
    assert diverse[0] == plain[0]  # MMR's first pick is the most relevant item
    assert mmr(np.array([0.9, 0.89, 0.5]), np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), 2, 0.5) == [0, 2]


def test_recency_follows_a_drifting_interest(titles: Labelled) -> None:
    ids = [str(i) for i in range(len(titles.texts))]
    rec = Recommender(ids, titles.vectors)
    y = np.asarray(titles.labels)
    old = [str(i) for i in np.flatnonzero(y == "sports")[:10]]
    new = [str(i) for i in np.flatnonzero(y == "realty")[:4]]
    recent = rec.recommend(old + new, 10, half_life=2.0)
    uniform = rec.recommend(old + new, 10, half_life=None)
    share = lambda recs, c: np.mean([titles.labels[int(r.id)] == c for r in recs])  # noqa: E731
    assert share(recent, "realty") > 0.5 and share(uniform, "sports") > 0.5
    # timestamps: the same, by age in seconds
    stamps = [0.0] * 10 + [1000.0] * 4
    assert share(rec.recommend(old + new, 10, half_life=100.0, timestamps=stamps), "realty") > 0.5
    w = rec.weights(3, half_life=1.0)
    assert w.tolist() == [0.25, 0.5, 1.0]


def test_more_like_this(titles: Labelled) -> None:
    ids = [str(i) for i in range(len(titles.texts))]
    rec = Recommender(ids, titles.vectors)
    got = rec.more_like_this("0", 10)
    assert "0" not in {r.id for r in got}
    assert np.mean([titles.labels[int(r.id)] == titles.labels[0] for r in got]) >= 0.6
    with pytest.raises(KeyError):
        rec.more_like_this("nope")


def test_cli_recommend(tmp_path: Path, cache_dir: Path, titles: Labelled, capsys: pytest.CaptureFixture[str]) -> None:
    items = tmp_path / "items.jsonl"
    picked = list(range(0, 240, 3))  # 80 items, all six categories
    with items.open("w", encoding="utf-8") as f:
        for i in picked:
            f.write(json.dumps({"id": f"n{i}", "text": titles.texts[i], "label": titles.labels[i]}, ensure_ascii=False))
            f.write("\n")
    sports = [f"n{i}" for i in picked if titles.labels[i] == "sports"][:4]
    argv = ["recommend", str(items), "--history", ",".join(sports), "-k", "5", "--json", "--cache-dir", str(cache_dir)]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 5 and not {r["id"] for r in out} & set(sports)
    label = {f"n{i}": titles.labels[i] for i in picked}
    assert sum(label[r["id"]] == "sports" for r in out) >= 3
