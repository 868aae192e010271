"""Sentence-aware chunking for Chinese and English text under a token limit.

:func:`split_sentences` cuts a text after Chinese and English sentence ends (``。！？!?…``, a ``.`` before
white space that does not end an initial or an abbreviation like ``e.g.`` or ``Dr.``, closing quotes and brackets
kept with their sentence) and at line breaks. :func:`chunk_text` packs whole sentences greedily into
chunks of at most ``target_tokens``; a sentence longer than ``max_tokens`` (the model's hard limit) is
cut at clause marks (``，、：；,;:``), then at spaces, then, as a last resort, at the longest character
prefix that fits. Every chunk is checked against ``max_tokens`` with the encoder's own count (prefix
and special tokens included), so no chunk is ever truncated by the model. Chunks carry their character
offsets in the original text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CountTokens = Callable[[Sequence[str]], list[int]]

_CLOSERS = "\"'”’」』）)］》\\]"
_SENTENCE_END = re.compile(
    rf"(?:[。！？!?]+|…+|(?<![A-Z])(?<!\b[A-Za-z])\.+(?=[{_CLOSERS}]*(?:\s|$)))[{_CLOSERS}]*\s*|\n\s*"
)
_ABBREVIATION = re.compile(r"(?<![A-Za-z])(?:Mr|Mrs|Ms|Dr|Prof|St|Sr|Jr|vs|etc|No|Fig|Inc|Ltd|Co|Vol|pp)\.\s*$", re.I)
_CLAUSE_END = re.compile(r"[，、：；,;:]\s*")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int  # character offsets of ``text`` in the original (stripped of surrounding white space)
    end: int
    tokens: int  # as counted by the encoder, prefix and special tokens included


def _spans(
    text: str, start: int, end: int, pattern: re.Pattern[str], skip: re.Pattern[str] | None = None
) -> list[tuple[int, int]]:
    """``text[start:end]`` cut after each match of ``pattern`` (spans cover the range exactly), except
    where the text up to the match's end matches ``skip``."""
    out = []
    pos = start
    for m in pattern.finditer(text, start, end):
        if skip is not None and skip.search(text, max(0, m.end() - 12), m.end()):
            continue
        if m.end() > pos and m.end() < end:
            out.append((pos, m.end()))
            pos = m.end()
    out.append((pos, end))
    return [s for s in out if text[s[0] : s[1]].strip()]


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (white-space-only spans dropped)."""
    return _spans(text, 0, len(text), _SENTENCE_END, _ABBREVIATION)


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    trail = len(piece) - len(piece.rstrip())
    return start + lead, end - trail


def chunk_text(
    text: str,
    count_tokens: CountTokens,
    *,
    max_tokens: int = 512,
    target_tokens: int = 256,
) -> list[Chunk]:
    """Chunks of whole sentences, each at most ``target_tokens`` where sentences allow, never over ``max_tokens``."""
    if target_tokens > max_tokens:
        target_tokens = max_tokens
    overhead = count_tokens(["a"])[0] - 1  # prefix and special tokens, paid once per chunk ("a" is one token)
    if max_tokens <= overhead:
        raise ValueError(f"max_tokens={max_tokens} leaves no room for text (prefix and special tokens take {overhead})")
    sentences = split_sentences(text)
    if not sentences:
        return []
    whole = _strip(text, 0, len(text))
    total = count_tokens([text[whole[0] : whole[1]]])[0]
    if total <= target_tokens:
        return [Chunk(text[whole[0] : whole[1]], whole[0], whole[1], total)]

    # sentence pieces that each fit max_tokens, with their token counts (overhead excluded)
    pieces: list[tuple[int, int, int]] = []
    counts = count_tokens([text[s:e] for s, e in sentences])
    for (s, e), n in zip(sentences, counts, strict=True):
        if n <= max_tokens:
            pieces.append((s, e, n - overhead))
        else:
            pieces.extend(_split_long(text, s, e, count_tokens, max_tokens, overhead))

    # greedy packing by the summed counts, then an exact check of each chunk
    groups: list[list[tuple[int, int, int]]] = [[]]
    used = overhead
    for piece in pieces:
        if groups[-1] and used + piece[2] > target_tokens:
            groups.append([])
            used = overhead
        groups[-1].append(piece)
        used += piece[2]
    chunks: list[Chunk] = []
    for group in groups:
        chunks.extend(_checked(text, group, count_tokens, max_tokens))
    return chunks


def _checked(text: str, group: list[tuple[int, int, int]], count_tokens: CountTokens, max_tokens: int) -> list[Chunk]:
    start, end = _strip(text, group[0][0], group[-1][1])
    n = count_tokens([text[start:end]])[0]
    if n <= max_tokens or len(group) == 1:  # one piece was already checked alone
        return [Chunk(text[start:end], start, end, n)]
    half = len(group) // 2  # tokens merged differently at a boundary: split the group
    return _checked(text, group[:half], count_tokens, max_tokens) + _checked(
        text, group[half:], count_tokens, max_tokens
    )


def _split_long(
    text: str, start: int, end: int, count_tokens: CountTokens, max_tokens: int, overhead: int
) -> list[tuple[int, int, int]]:
    """Pieces of an over-long sentence, each fitting ``max_tokens``: clauses, then words, then characters."""
    for pattern in (_CLAUSE_END, _SPACE):
        spans = _spans(text, start, end, pattern)
        if len(spans) > 1:
            out: list[tuple[int, int, int]] = []
            counts = count_tokens([text[s:e] for s, e in spans])
            for (s, e), n in zip(spans, counts, strict=True):
                if n <= max_tokens:
                    out.append((s, e, n - overhead))
                else:
                    out.extend(_split_long(text, s, e, count_tokens, max_tokens, overhead))
            return out
    # no clause mark, no space: the longest prefixes that fit, one after another
    out = []
    pos = start
    while pos < end:
        lo, hi = pos + 1, end  # text[pos:lo] fits (a single character always does)
        if count_tokens([text[pos:hi]])[0] <= max_tokens:
            lo = hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if count_tokens([text[pos:mid]])[0] <= max_tokens:
                lo = mid
            else:
                hi = mid
        out.append((pos, lo, count_tokens([text[pos:lo]])[0] - overhead))
        pos = lo
    return out


__all__ = ["Chunk", "chunk_text", "split_sentences"]
