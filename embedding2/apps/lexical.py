"""Lexical text features: character n-grams for Chinese, words for other scripts, with no segmenter.

Used twice: for cluster keywords (class-based TF-IDF over character bigrams and words, as BERTopic's
c-TF-IDF) and as the TF-IDF baseline every scenario's quality is reported against (scikit-learn's
``TfidfVectorizer`` with :func:`analyzer`, character unigrams and bigrams, sublinear tf, L2 rows).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+|[^\W\d_]{2,}")
_STOP_WORDS = (
    "the a an and or of to in on for with by at from as is are was were be been it its this that these those "
    "not no but if then than into about over under after before via de la le"
)
_STOP = frozenset(_STOP_WORDS.split())


def analyzer(ngrams: Sequence[int] = (1, 2)) -> Callable[[str], list[str]]:
    """A tokenizer: character ``ngrams`` of each run of Chinese characters, lower-cased words elsewhere."""
    sizes = tuple(sorted(set(ngrams)))

    def tokens(text: str) -> list[str]:
        out: list[str] = []
        for run in _CJK_RUN.findall(text):
            for n in sizes:
                out.extend(run[i : i + n] for i in range(len(run) - n + 1))
        rest = _CJK_RUN.sub(" ", text)
        out.extend(w for w in (m.lower() for m in _WORD.findall(rest)) if w not in _STOP)
        return out

    return tokens


def tfidf_vectorizer(ngrams: Sequence[int] = (1, 2), min_df: int = 1) -> Any:
    """The baseline's vectorizer (unfitted): TF-IDF of :func:`analyzer` tokens, sublinear tf, L2 rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer=analyzer(ngrams), sublinear_tf=True, min_df=min_df, dtype=np.float32)


def tfidf_matrix(texts: Sequence[str], ngrams: Sequence[int] = (1, 2)) -> Any:
    """Sparse L2-normalised TF-IDF rows of ``texts`` (the vocabulary fitted on ``texts``)."""
    return tfidf_vectorizer(ngrams).fit_transform(list(texts))


def group_keywords(texts: Sequence[str], groups: Sequence[int], n: int = 8) -> dict[int, list[str]]:
    """The ``n`` most distinctive terms of each group by class-based TF-IDF.

    Each group's texts are counted as one document; a term scores ``tf * log(1 + A / f)``, where ``tf``
    is its frequency in the group (normalised by the group's length), ``f`` its frequency over all
    groups and ``A`` the mean number of terms per group. Chinese terms are character bigrams and
    trigrams (no segmenter); a term must occur in at least two texts. Overlaps are merged while
    choosing: a term inside an already chosen one is skipped, and a trigram that contains chosen
    bigrams and occurs at least 60 % as often as each of them replaces them (``奥巴`` + ``巴马`` ->
    ``奥巴马``).
    """
    from sklearn.feature_extraction.text import CountVectorizer

    labels = np.asarray(groups)
    ids = sorted({int(g) for g in labels.tolist() if int(g) >= 0})
    if not ids:
        return {}
    vectorizer = CountVectorizer(analyzer=analyzer((2, 3)), min_df=min(2, len(texts)))
    try:
        counts = vectorizer.fit_transform(list(texts))
    except ValueError:  # no term at all
        return {g: [] for g in ids}
    vocab = np.asarray(vectorizer.get_feature_names_out())
    per_group = np.vstack([np.asarray(counts[labels == g].sum(axis=0)).ravel() for g in ids]).astype(np.float64)
    tf = per_group / np.maximum(per_group.sum(axis=1, keepdims=True), 1.0)
    freq = per_group.sum(axis=0)
    avg = per_group.sum() / len(ids)
    score = tf * np.log1p(avg / np.maximum(freq, 1.0))
    out: dict[int, list[str]] = {}
    for row, g in enumerate(ids):
        order = np.argsort(-score[row], kind="stable")[: 5 * n]
        out[g] = _merge_overlaps([(str(vocab[j]), float(per_group[row, j])) for j in order if per_group[row, j] > 0], n)
    return out


def _merge_overlaps(ranked: list[tuple[str, float]], n: int) -> list[str]:
    """The first ``n`` terms of ``ranked`` (term, count), overlapping character n-grams merged."""
    chosen: list[str] = []
    count = dict(ranked)
    for term, c in ranked:
        if any(term in s for s in chosen):
            continue
        inner = [s for s in chosen if s in term]
        if inner:
            if all(c >= 0.6 * count[s] for s in inner):
                at = chosen.index(inner[0])
                chosen = [s for s in chosen if s not in inner]
                chosen.insert(at, term)
            continue
        if len(chosen) < n:
            chosen.append(term)
    return chosen


__all__ = ["analyzer", "group_keywords", "tfidf_matrix", "tfidf_vectorizer"]
