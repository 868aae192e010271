"""Anomaly detection end to end: one thucnews category is normal, the others are anomalies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from embedding2.apps.anomaly import METHODS, AnomalyDetector
from embedding2.apps.lexical import tfidf_vectorizer
from embedding2.cli import main
from tests.apps.conftest import Labelled


def _split(
    train: Labelled, test: Labelled, normal: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int], list[int]]:
    tr = [i for i, c in enumerate(train.labels) if c == normal]
    te_norm = [i for i, c in enumerate(test.labels) if c == normal]
    te_anom = [i for i, c in enumerate(test.labels) if c != normal][::5]  # 40 of the 200 others
    te = te_norm + te_anom
    truth = np.array([0] * len(te_norm) + [1] * len(te_anom))
    return train.vectors[tr], test.vectors[te], truth, tr, te


@pytest.mark.parametrize("method", METHODS)
def test_auroc_beats_tfidf(method: str, titles_validation: Labelled, titles: Labelled) -> None:
    xtr, xte, truth, tr, te = _split(titles_validation, titles, "sports")
    det = AnomalyDetector(method).fit(xtr)  # type: ignore[arg-type]
    auc = roc_auc_score(truth, det.score(xte))
    vec = tfidf_vectorizer().fit([titles_validation.texts[i] for i in tr])
    lex = AnomalyDetector(method).fit(vec.transform([titles_validation.texts[i] for i in tr]))  # type: ignore[arg-type]
    lex_auc = roc_auc_score(truth, lex.score(vec.transform([titles.texts[i] for i in te])))
    assert auc > 0.85 and auc > lex_auc, (auc, lex_auc)


def test_threshold_is_a_percentile_of_normal_scores(titles_validation: Labelled, titles: Labelled) -> None:
    xtr, xte, truth, _, _ = _split(titles_validation, titles, "finance")
    det = AnomalyDetector("knn", n_neighbors=5, percentile=90).fit(xtr)
    assert det.threshold == pytest.approx(np.percentile(det.train_scores, 90))
    assert np.mean(det.train_scores > det.threshold) == pytest.approx(0.1, abs=0.02)
    scores, flags = det.flag(xte)
    assert flags.tolist() == (scores > det.threshold).tolist()
    assert flags[truth == 1].mean() > flags[truth == 0].mean() + 0.4
    # leave-one-out: the normal texts' own scores are not zero-distance self matches
    assert det.train_scores.min() > 0.01


def test_save_and_load(tmp_path: Path, titles_validation: Labelled, titles: Labelled) -> None:
    xtr, xte, _, _, _ = _split(titles_validation, titles, "game")
    for method in METHODS:
        det = AnomalyDetector(method, percentile=97).fit(xtr)
        det.encoder_key = "engine:e5-small:native:384"
        path = det.save(tmp_path / f"{method}.npz")
        back = AnomalyDetector.load(path)
        assert (back.method, back.percentile, back.encoder_key) == (method, 97, det.encoder_key)
        assert back.threshold == pytest.approx(det.threshold)
        assert np.allclose(back.score(xte), det.score(xte))


def test_cli_fit_and_score(
    tmp_path: Path, cache_dir: Path, titles_validation: Labelled, titles: Labelled, capsys: pytest.CaptureFixture[str]
) -> None:
    normal = tmp_path / "normal.txt"
    normal.write_text(
        "\n".join(t for t, c in zip(titles_validation.texts, titles_validation.labels, strict=True) if c == "sports")
    )
    new = tmp_path / "new.tsv"
    rows = [(f"s{i}", t) for i, t in enumerate(titles.texts[:10])] + [
        (f"r{i}", t) for i, t in enumerate(titles.texts[-10:])
    ]
    new.write_text("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in rows), encoding="utf-8")
    det, out = tmp_path / "det.npz", tmp_path / "scores.tsv"
    common = ["--detector", str(det), "--cache-dir", str(cache_dir)]
    assert main(["anomaly", "fit", str(normal), "--method", "lof", *common]) == 0
    assert "fitted lof on 60 normal texts" in capsys.readouterr().out
    assert main(["anomaly", "score", str(new), "--out", str(out), *common]) == 0
    scored = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()[1:]]
    flagged = {r[0] for r in scored if r[2] == "1"}
    assert len(flagged & {f"r{i}" for i in range(10)}) >= 8 and len(flagged & {f"s{i}" for i in range(10)}) <= 2
