"""Clustering end to end on thucnews titles: embeddings beat TF-IDF, automatic k, descriptions, the map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import v_measure_score

from embedding2.apps.cluster import choose_k, cluster_texts, kmeans
from embedding2.apps.lexical import group_keywords, tfidf_matrix
from embedding2.cli import main
from tests.apps.conftest import Labelled


def test_embeddings_beat_tfidf(titles: Labelled) -> None:
    k = len(set(titles.labels))
    emb = np.mean([v_measure_score(titles.labels, kmeans(titles.vectors, k, seed=s)[0]) for s in range(3)])
    lex = np.mean([v_measure_score(titles.labels, kmeans(tfidf_matrix(titles.texts), k, seed=s)[0]) for s in range(3)])
    assert emb > lex + 0.1, (emb, lex)
    assert emb > 0.4


def test_describe_and_automatic_k(titles: Labelled) -> None:
    result = cluster_texts(titles.texts, titles.vectors, k_max=10)
    assert 2 <= result.k <= 10
    assert set(result.k_scores) == set(range(2, 11))
    assert result.k_scores[result.k] == max(result.k_scores.values())
    assert sum(c.size for c in result.clusters) == len(titles.texts)
    assert [c.size for c in result.clusters] == sorted((c.size for c in result.clusters), reverse=True)
    for c in result.clusters:
        members = set(np.flatnonzero(result.labels == c.id).tolist())
        assert set(c.representatives) <= members and len(c.representatives) == min(3, c.size)
        assert c.keywords, c
        member_text = "".join(titles.texts[i] for i in members)
        assert all(kw in member_text.lower() for kw in c.keywords)


def test_keywords_name_the_topic(titles: Labelled) -> None:
    groups = [sorted(set(titles.labels)).index(label) for label in titles.labels]
    keywords = group_keywords(titles.texts, groups, 10)
    realty = sorted(set(titles.labels)).index("realty")
    assert {"房价", "楼市", "地产", "房产", "住宅", "买房"} & set(keywords[realty]), keywords[realty]


def test_choose_k_on_separated_topics(titles: Labelled) -> None:
    # two clearly different categories: the silhouette should prefer a small k
    mask = np.isin(titles.labels, ["sports", "realty"])
    k, scores = choose_k(titles.vectors[mask], k_min=2, k_max=6)
    assert k <= 3, scores


def test_cli_cluster_with_map(
    tmp_path: Path, cache_dir: Path, titles: Labelled, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "titles.txt"
    src.write_text("\n".join(titles.texts[:40] + titles.texts[-40:]) + "\n", encoding="utf-8")  # sports, realty
    png, tsv = tmp_path / "map.png", tmp_path / "labels.tsv"
    argv = [
        "cluster",
        str(src),
        "-k",
        "2",
        "--map",
        str(png),
        "--out",
        str(tsv),
        "--json",
        "--cache-dir",
        str(cache_dir),
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["k"] == 2 and sum(c["size"] for c in out["clusters"]) == 80
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    rows = tsv.read_text(encoding="utf-8").splitlines()
    assert rows[0] == "id\tcluster\ttext" and len(rows) == 81
    found = [int(r.split("\t")[1]) for r in rows[1:]]
    assert v_measure_score([0] * 40 + [1] * 40, found) > 0.7  # the two topics, nearly exactly
