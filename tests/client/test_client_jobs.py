"""``embed_many`` against a real server: splitting a 10,000-text job, retries under a tiny tier, the cache.

Every figure is checked on the server's side too: its SQLite usage ledger (one row per billed request,
with the request's tokens) and its Prometheus counters (how many 429/1302 it answered). Vectors are
compared bit for bit with the in-process engine (the ``e5`` fixture) embedding the same texts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from embedding2.client import AsyncClient, Client, EmbeddingCache, EstimatedTokenCounter
from embedding2.client.planning import combine, split_windows
from embedding2.engine.embedder import Embedder
from embedding2.models.spec import InputType
from tests.client.conftest import Server

ZH = [
    "美食",
    "服务",
    "电影",
    "刺激",
    "友好",
    "天气",
    "城市",
    "音乐",
    "学校",
    "医院",
    "朋友",
    "旅行",
    "书籍",
    "咖啡",
    "花园",
]
EN = [
    "food",
    "service",
    "movie",
    "exciting",
    "friendly",
    "weather",
    "city",
    "music",
    "school",
    "hospital",
    "friend",
    "travel",
    "book",
    "coffee",
]


def short_texts(n: int, seed: int, tag: str) -> list[str]:
    """``n`` distinct one-word texts (7-9 tokens with e5's prefix), Chinese and English."""
    rng = random.Random(seed)
    return [f"{rng.choice(ZH + EN)} {tag}{i}" for i in range(n)]


def sentence(rng: random.Random, words: int) -> str:
    if rng.random() < 0.5:
        return "".join(rng.choice(ZH) for _ in range(words)) + "。"
    return " ".join(rng.choice(EN) for _ in range(words)) + "."


def expected(e5: Embedder, texts: list[str]) -> np.ndarray:
    return e5.embed(texts, model="embedding-2").vectors


# 200 common characters: the 100 x 100 pairs of the two halves are 10,000 distinct two-character texts
HAN = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后"
    "多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合"
    "还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但气第向道命此变条只没"
    "结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流"
)
WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "green",
    "house",
    "music",
    "light",
    "paper",
    "table",
    "window",
    "garden",
    "winter",
    "summer",
    "coffee",
    "bread",
    "water",
    "money",
    "friend",
    "school",
    "city",
    "train",
    "road",
    "happy",
    "quick",
    "small",
    "great",
    "little",
    "young",
    "early",
    "night",
    "morning",
]


def tiny_texts(n: int) -> list[str]:
    """``n`` distinct texts of 6-8 tokens with e5's prefix (one padded length for the engine: cheap)."""
    chars = list(dict.fromkeys(HAN))
    han = [a + b for a in chars[:100] for b in chars[100:200]]
    english = [f"{a} {b}" for a in WORDS for b in WORDS if a != b]
    mixed = [t for pair in zip(english, han, strict=False) for t in pair] + han[len(english) :]
    assert len(mixed) >= n
    return mixed[:n]


def test_ten_thousand_texts_split_within_limits(server: Server, e5: Embedder, cache_dir: Path) -> None:
    rng = random.Random(2024)
    medium = [f"{i} " + sentence(rng, rng.randint(5, 25)) for i in range(200)]
    long = [f"{i} " + sentence(rng, rng.randint(100, 200)) for i in range(20)]
    over = [f"{i} " + " ".join(sentence(rng, 40) for _ in range(rng.randint(16, 20))) for i in range(5)]
    texts = tiny_texts(10_000 - len(medium) - len(long) - len(over))
    for extra in (medium, long, over):
        for t in extra:
            texts.insert(rng.randrange(len(texts) + 1), t)
    key = server.new_key("bigjob", "V1")
    client = Client(api_key=key, base_url=server.base_url, cache_dir=cache_dir)
    counts = client.count_tokens(texts)
    assert max(counts) > 512 and sum(c > 512 for c in counts) == len(over)

    vectors = client.embed_many(texts, long_text="chunk")

    report = client.last_job
    assert report is not None
    assert len(texts) == 10_000 and vectors.shape == (10_000, 1024) and vectors.dtype == np.float32
    assert report.retries == 0 and report.splits == 0 and report.requests_sent == report.requests_planned
    # the server's ledger: one row per planned request, none over 8,192 tokens, every token billed once
    rows = server.ledger("bigjob")
    assert len(rows) == report.requests_planned
    assert max(r.tokens for r in rows) <= 8192
    assert sum(r.tokens for r in rows) == report.billed_tokens == report.planned_tokens
    normal_tokens = sum(c for c in counts if c <= 512)
    window_tokens = sum(
        n for t in over for _, n, _ in split_windows(t, client.tokenizer, input_type=None, item_tokens=512, overlap=64)
    )
    assert report.planned_tokens == normal_tokens + window_tokens
    assert report.requests_planned >= report.planned_tokens / 8192
    # order kept and vectors exact: a sample against the in-process engine, texts one by one
    sample = sorted(rng.sample(range(len(texts)), 150) + [texts.index(t) for t in long[:5] + medium[:5]])
    sample = [i for i in sample if counts[i] <= 512]
    assert np.array_equal(vectors[sample], expected(e5, [texts[i] for i in sample]))
    # a long text: its windows embedded by the engine, averaged by their own token counts
    for t in over[:2]:
        windows = split_windows(t, client.tokenizer, input_type=None, item_tokens=512, overlap=64)
        want = combine(expected(e5, [w for w, _, _ in windows]), [own for _, _, own in windows])
        np.testing.assert_allclose(vectors[texts.index(t)], want, atol=1e-6)
    client.close()


def _retry_job_checks(server: Server, account: str, texts: list[str], vectors: np.ndarray, report: object) -> None:
    rows = server.ledger(account)
    assert report is not None
    assert report.congestion_answers > 0 and report.retries >= report.congestion_answers  # type: ignore[attr-defined]
    # each request billed exactly once: 429s are not billed, retried requests appear once
    assert len(rows) == report.requests_planned  # type: ignore[attr-defined]
    assert len({r.request_id for r in rows}) == len(rows)


def test_retries_under_a_tiny_tier_embed_each_text_once(server: Server, e5: Embedder, cache_dir: Path) -> None:
    texts = short_texts(200, 2, "r")
    key = server.new_key("tiny-sync", "tiny")  # 2 requests in flight
    rejected_before = server.metric("embedding2_requests_total", code="1302")
    with Client(api_key=key, base_url=server.base_url, cache_dir=cache_dir) as client:
        vectors = client.embed_many(texts, batch_items=10, max_concurrency=8)
        report = client.last_job
        exact = client.count_tokens(texts)
    assert server.metric("embedding2_requests_total", code="1302") > rejected_before  # real 429/1302 answers
    _retry_job_checks(server, "tiny-sync", texts, vectors, report)
    assert sum(r.tokens for r in server.ledger("tiny-sync")) == sum(exact)
    assert report is not None and report.max_in_flight <= 8 and report.final_concurrency < 8
    assert np.array_equal(vectors, expected(e5, texts))


def test_async_client_retries_and_keeps_order(server: Server, e5: Embedder, cache_dir: Path) -> None:
    texts = short_texts(240, 3, "a")
    texts[17] = texts[3]  # a duplicate is sent once and returned twice
    key = server.new_key("tiny-async", "tiny")

    async def run() -> tuple[np.ndarray, object]:
        async with AsyncClient(api_key=key, base_url=server.base_url, cache_dir=cache_dir) as client:
            vectors = await client.embed_many(texts, batch_items=8, max_concurrency=8)
            return vectors, client.last_job

    vectors, report = asyncio.run(run())
    _retry_job_checks(server, "tiny-async", texts, vectors, report)
    distinct = list(dict.fromkeys(texts))
    assert sum(r.tokens for r in server.ledger("tiny-async")) == sum(e5.count_tokens(distinct))
    assert np.array_equal(vectors, expected(e5, texts))


def test_cache_means_a_rerun_sends_nothing(
    server: Server, e5: Embedder, cache_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    texts = [*short_texts(200, 4, "c"), "一段稍长的文字，" * 12, "a somewhat longer English text " * 6]
    path = tmp_path / "vectors.sqlite"
    key = server.new_key("cached", "V0")
    with Client(api_key=key, base_url=server.base_url, cache_dir=cache_dir) as client:
        first = client.embed_many(texts, cache=path, batch_items=50, progress=True)
        assert client.last_job is not None and client.last_job.requests_sent == 5
    bar = capfd.readouterr().err
    assert "tok/s" in bar and "¥" in bar and "202 texts" in bar  # the progress bar: rate, cost so far
    billed = server.ledger("cached")
    assert len(billed) == 5 and sum(r.tokens for r in billed) == sum(e5.count_tokens(texts))
    assert len(EmbeddingCache(path)) == len(texts)
    requests_before = server.metric("embedding2_requests_total", endpoint="embeddings")

    with Client(api_key=key, base_url=server.base_url, cache_dir=cache_dir) as again:  # a new run of the job
        second = again.embed_many(list(reversed(texts)), cache=path)
        assert again.last_job is not None and again.last_job.requests_sent == 0
        assert again.last_job.cached_pieces == len(texts)
    assert (
        server.metric("embedding2_requests_total", endpoint="embeddings") == requests_before
    )  # nothing reached the server
    assert server.ledger("cached") == billed
    assert np.array_equal(second[::-1], first)
    assert np.array_equal(first, expected(e5, texts))

    # a grown job pays only for its new texts; another dimensions/model is another key
    new = short_texts(30, 5, "n")
    with Client(api_key=key, base_url=server.base_url, cache_dir=cache_dir) as third:
        third.embed_many(texts + new, cache=path)
        assert third.last_job is not None and third.last_job.cached_pieces == len(texts)
        third.embed_many(new[:5], cache=path, model="embedding-3", dimensions=256)
        assert third.last_job.requests_sent == 1
    grown = server.ledger("cached")
    new_tokens = sum(e5.count_tokens(new)) + sum(e5.count_tokens(new[:5]))
    assert sum(r.tokens for r in grown) - sum(r.tokens for r in billed) == new_tokens


class UnderCounter(EstimatedTokenCounter):
    """A tokenizer that under-counts tenfold, as a wrong estimate would: the service refuses its plans."""

    def count(self, texts: Sequence[str], input_type: InputType | None = None) -> list[int]:
        return [max(1, n // 10) for n in super().count(texts, input_type)]


def test_requests_refused_as_too_long_are_split_and_resent(server: Server, e5: Embedder) -> None:
    rng = random.Random(9)
    texts = [f"{i} " + sentence(rng, 90) for i in range(90)]  # about 9,000 tokens in all
    assert sum(e5.count_tokens(texts)) > 8192
    key = server.new_key("splitter", "V0")
    with Client(api_key=key, base_url=server.base_url, tokenizer=UnderCounter()) as client:
        vectors = client.embed_many(texts)
        report = client.last_job
    assert report is not None and report.requests_planned == 1 and report.splits >= 1
    rows = server.ledger("splitter")
    assert len(rows) == report.requests_sent - report.splits  # refused requests are not billed
    assert max(r.tokens for r in rows) <= 8192 and sum(r.tokens for r in rows) == sum(e5.count_tokens(texts))
    assert np.array_equal(vectors[::9], expected(e5, texts[::9]))  # order kept across the halves
