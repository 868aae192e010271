"""Sentence-aware chunking under the real e5-small tokenizer, on real Chinese and English paragraphs."""

from __future__ import annotations

import re
from itertools import pairwise

from embedding2.apps.chunking import chunk_text, split_sentences
from embedding2.apps.encoders import EngineEncoder
from tests.apps.conftest import Retrieval

_END = re.compile(r"[。！？!?…\.]['\"”’」』）)\]]*$")


def test_split_sentences_chinese_and_english() -> None:
    text = "今天天气很好。我们去公园吧！你觉得呢？“好的。”他说。"
    text += "Dr. Smith arrived at 3.5 p.m. in the U.S. today. He left.\n标题"
    parts = [text[s:e].strip() for s, e in split_sentences(text)]
    assert parts == [
        "今天天气很好。",
        "我们去公园吧！",
        "你觉得呢？",
        "“好的。”",
        "他说。",
        "Dr. Smith arrived at 3.5 p.m. in the U.S. today.",
        "He left.",
        "标题",
    ]
    spans = split_sentences(text)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in pairwise(spans))  # they tile the text


def _count(encoder: EngineEncoder):  # type: ignore[no-untyped-def]
    return lambda texts: encoder.count_tokens(texts, "document")


def test_chunks_fit_the_limit_and_end_at_sentences(encoder: EngineEncoder, cmrc: Retrieval, xquad: Retrieval) -> None:
    count = _count(encoder)
    long_docs = [d for d in cmrc.docs + xquad.docs if count([d])[0] > 256]
    assert len(long_docs) >= 10
    for doc in long_docs:
        chunks = chunk_text(doc, count, max_tokens=512, target_tokens=256)
        assert len(chunks) >= 2
        exact = count([c.text for c in chunks])
        assert exact == [c.tokens for c in chunks]
        assert max(exact) <= 512
        # chunks follow each other through the document and lose no text
        assert [c.text for c in chunks] == [doc[c.start : c.end] for c in chunks]
        assert "".join(c.text for c in chunks).replace(" ", "") == "".join(doc.split()).replace(" ", "")
        assert all(a.end <= b.start for a, b in pairwise(chunks))
        # every chunk but the last ends a sentence, unless a single sentence had to be cut
        sentences = split_sentences(doc)
        ends = {len(doc[:e].rstrip()) for _, e in sentences}
        for c in chunks[:-1]:
            if c.end not in ends:
                inside = next((s, e) for s, e in sentences if s < c.end < e)
                assert count([doc[inside[0] : inside[1]]])[0] > 512, c.text[-30:]
        # packing uses the budget: no two neighbours would have fitted together
        for a, b in pairwise(chunks):
            assert count([doc[a.start : b.end]])[0] > 256 - 4


def test_over_long_sentence_is_cut_at_clauses_then_characters(encoder: EngineEncoder) -> None:
    count = _count(encoder)
    clauses = "，".join(["这是一个没有句号但是有很多逗号的非常长的从句"] * 80) + "。"
    chunks = chunk_text(clauses, count, max_tokens=128, target_tokens=100)
    assert len(chunks) > 3 and max(c.tokens for c in chunks) <= 128
    assert all(c.text.endswith(("，", "。")) for c in chunks)
    run = "汉" * 2000  # no punctuation, no spaces: cut by characters
    chunks = chunk_text(run, count, max_tokens=100, target_tokens=100)
    assert max(c.tokens for c in chunks) <= 100
    assert "".join(c.text for c in chunks) == run


def test_short_text_is_one_chunk(encoder: EngineEncoder) -> None:
    chunks = chunk_text("  短文本。Short text.  ", _count(encoder))
    assert [c.text for c in chunks] == ["短文本。Short text."]
    assert chunks[0].start == 2
