"""The SDK's I/O-free parts on real inputs: exact counts, packing, long-text windows, retry rules, the cache.

Token counts are checked against the engine that the server runs (the real e5-small tokenizer and
``Embedder.prepare``), retry decisions against real ``httpx.Response`` objects carrying the service's
headers, the cache against a real SQLite file.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import httpx
import numpy as np
import pytest

from embedding2.client import EmbeddingCache, EstimatedTokenCounter, ModelTokenCounter, TokenLimitError
from embedding2.client.errors import (
    AuthenticationError,
    BadRequestError,
    ConcurrencyLimitError,
    InternalServerError,
    QuotaExceededError,
    ServerOverloadedError,
    UnknownModelError,
    from_response,
)
from embedding2.client.planning import Job, Limits, combine, job_limits, pack, split_windows
from embedding2.client.retry import AdaptiveLimit, RetryPolicy
from embedding2.engine.embedder import Embedder


@pytest.fixture(scope="module")
def counter(cache_dir: Path) -> ModelTokenCounter:
    return ModelTokenCounter.load("e5-small", cache_dir)


def test_counts_are_the_servers(counter: ModelTokenCounter, e5: Embedder, mixed_texts: list[str]) -> None:
    texts = [t for t in mixed_texts if e5.count_tokens([t])[0] <= 512][:200]
    for input_type in (None, "query", "document"):
        ours = counter.count(texts, input_type)
        theirs = e5.prepare(texts, model=None, input_type=input_type).token_counts
        assert ours == theirs


def test_limits_follow_model_and_caller(counter: ModelTokenCounter) -> None:
    assert job_limits("embedding-2", counter) == Limits(512, 8192, None)
    assert job_limits("embedding-2", counter, batch_tokens=1000, batch_items=10) == Limits(512, 1000, 10)
    # embedding-3 allows 3,072 tokens an item, but the backing model (e5-small) stops at 512
    assert job_limits("embedding-3", counter) == Limits(512, None, 64)
    assert job_limits("embedding-3", EstimatedTokenCounter()).item_tokens == 3072


def test_pack_respects_limits_and_order() -> None:
    rng = random.Random(7)
    counts = [rng.choice([3, 9, 40, 200, 512]) for _ in range(3000)]
    for limits in (Limits(512, 8192, None), Limits(512, 1000, 16), Limits(512, 300, None)):
        groups = pack(counts, limits)
        assert [i for g in groups for i in g] == list(range(len(counts)))
        for g in groups:
            assert len(g) >= 1
            if limits.request_items is not None:
                assert len(g) <= limits.request_items
            if len(g) > 1:
                assert limits.request_tokens is not None
                assert sum(counts[i] for i in g) <= limits.request_tokens
        # greedy: a group never closes while the next item would still have fitted
        for a, b in itertools.pairwise(groups):
            fits_tokens = sum(counts[i] for i in a) + counts[b[0]] <= (limits.request_tokens or 10**9)
            fits_items = len(a) < (limits.request_items or 10**9)
            assert not (fits_tokens and fits_items)


def test_windows_fit_cover_and_overlap(counter: ModelTokenCounter, mixed_texts: list[str]) -> None:
    long_text = " ".join(mixed_texts[-40:])  # Chinese and English passages, thousands of tokens
    total = counter.count([long_text])[0]
    assert total > 2000
    windows = split_windows(long_text, counter, input_type=None, item_tokens=512, overlap=64)
    assert len(windows) >= total // 512
    for text, sent_tokens, _own in windows:
        assert counter.count([text])[0] == sent_tokens <= 512
        assert text in long_text
    assert all(sent > 500 for _, sent, _ in windows[:-1])  # each window as wide as the limit allows
    # consecutive windows overlap, and together they cover the whole text
    starts = [long_text.index(w[0]) for w in windows]
    ends = [s + len(w[0]) for s, w in zip(starts, windows, strict=True)]
    assert starts[0] <= len(long_text) - len(long_text.lstrip()) + 1
    assert ends[-1] >= len(long_text.rstrip())
    for i in range(1, len(windows)):
        assert starts[i] < ends[i - 1]  # overlap
        assert starts[i] > starts[i - 1]


def test_job_folds_duplicates_and_keeps_order(counter: ModelTokenCounter) -> None:
    texts = ["b text", "a text", "b text", "c text", "a text"]
    job = Job(
        texts,
        counter=counter,
        limits=Limits(512, 8192, 2),
        model="embedding-2",
        dimensions=None,
        input_type=None,
    )
    assert job.distinct == 3
    assert sorted(job.pieces) == ["a text", "b text", "c text"]
    assert [len(b.pieces) for b in job.batches] == [2, 1]
    for b in job.batches:
        job.complete(b, np.stack([np.full(4, ord(job.pieces[i][0]), np.float32) for i in b.pieces]))
    out = job.result()
    assert [chr(int(v[0])) for v in out] == [t[0] for t in texts]


def test_job_refuses_bad_texts_locally(counter: ModelTokenCounter) -> None:
    limits = Limits(512, 8192, None)
    kw = {"counter": counter, "limits": limits, "model": "embedding-2", "dimensions": None, "input_type": None}
    with pytest.raises(TokenLimitError) as err:
        Job(["fine", "word " * 600], **kw)  # type: ignore[arg-type]
    assert err.value.code == "1261" and err.value.status is None and "texts[1]" in err.value.message
    with pytest.raises(BadRequestError) as bad:
        Job(["fine", "  "], **kw)  # type: ignore[arg-type]
    assert bad.value.code == "1214"
    with pytest.raises(TypeError):
        Job("one string", **kw)  # type: ignore[arg-type]


def test_combine_is_token_weighted_and_normalised() -> None:
    a = np.array([1.0, 0.0], np.float32)
    b = np.array([0.0, 1.0], np.float32)
    v = combine(np.stack([a, b]), [3, 1])
    assert np.isclose(np.linalg.norm(v), 1.0)
    assert np.allclose(v, np.array([3.0, 1.0]) / np.sqrt(10.0))


def test_estimate_overcounts_real_tokenizer(counter: ModelTokenCounter, mixed_texts: list[str]) -> None:
    est = EstimatedTokenCounter()
    real = counter.count(mixed_texts, "query")
    guess = est.count(mixed_texts)
    # over-counts ordinary Chinese and English text (e5's "query: " prefix included)
    assert all(g >= r for g, r in zip(guess, real, strict=True))
    assert est.spans("ab 你好") == [(0, 2), (3, 4), (4, 5)]


def _answer(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "http://127.0.0.1/api/paas/v4/embeddings")
    body = {"error": {"code": code, "message": "m"}}
    return httpx.Response(status, json=body, headers=headers or {}, request=request)


def test_error_classes_and_retry_rules() -> None:
    policy = RetryPolicy(max_retries=3, initial_delay=0.5, max_delay=8.0)
    limited = from_response(_answer(429, "1302", {"x-should-retry": "true", "retry-after-ms": "250"}))
    assert isinstance(limited, ConcurrencyLimitError) and limited.status == 429 and limited.code == "1302"
    assert policy.should_retry(limited, 0) and not policy.should_retry(limited, 3)
    delays = [policy.delay(limited, 2, random.Random(i)) for i in range(200)]
    assert min(delays) >= 0.25 and max(delays) <= 0.25 + 2.0 and len(set(delays)) > 100  # Retry-After + jitter
    overloaded = from_response(_answer(429, "1305"))
    assert isinstance(overloaded, ServerOverloadedError) and policy.should_retry(overloaded, 0)
    quota = from_response(_answer(429, "1113", {"x-should-retry": "false"}))
    assert isinstance(quota, QuotaExceededError) and not policy.should_retry(quota, 0)
    server = from_response(_answer(500, "500"))
    assert isinstance(server, InternalServerError) and policy.should_retry(server, 0)
    for status, code, cls in ((400, "1214", BadRequestError), (400, "1211", UnknownModelError),
                              (400, "1261", TokenLimitError), (401, "1000", AuthenticationError)):  # fmt: skip
        exc = from_response(_answer(status, code))
        assert type(exc) is cls and exc.code == code and exc.status == status
        assert not policy.should_retry(exc, 0)
    # a body that is not the contract's (a proxy's HTML page) still gives a typed error
    html = httpx.Response(502, text="<html>bad gateway</html>", request=httpx.Request("POST", "http://x"))
    err = from_response(html)
    assert isinstance(err, InternalServerError) and err.code == "502" and err.status == 502


def test_adaptive_limit_backs_off_and_recovers() -> None:
    limit = AdaptiveLimit(16, cooldown_s=0.2)
    now = 100.0
    for step in range(10):
        limit.on_congestion(now + step * 0.3)
    assert limit.current == 1
    limit.on_congestion(now + 2.8)  # within the cooldown: no second cut
    assert limit.cuts == 10
    for _ in range(200):
        limit.on_success()
    assert limit.current == 16


def test_cache_roundtrip_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    k1 = EmbeddingCache.key("embedding-2", 1024, None, "你好")
    assert k1 != EmbeddingCache.key("embedding-2", 1024, "document", "你好")
    assert k1 != EmbeddingCache.key("embedding-3", 1024, None, "你好")
    assert k1 != EmbeddingCache.key("embedding-2", 512, None, "你好")
    v = np.random.default_rng(0).standard_normal(1024).astype(np.float32)
    with EmbeddingCache(path) as cache:
        cache.put_many([(k1, v)])
    with EmbeddingCache(path) as again:  # a new process would see the same
        got = again.get_many([k1, EmbeddingCache.key("embedding-2", 1024, None, "other")])
        assert list(got) == [k1] and np.array_equal(got[k1], v) and got[k1].dtype == np.float32
        assert len(again) == 1
