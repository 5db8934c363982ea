"""Split a parsed document into retrievable spans: token-bounded, sentence-respecting, overlapping.

Sentences are counted once; packing adds those counts and then counts each emitted chunk exactly, so a
chunk never exceeds ``chunk_tokens`` and chunking stays linear in the document's length.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

from rag.tokens import count_tokens, encoding
from rag.types import ParsedDocument, Section

MIN_CHUNK_TOKENS = 16

# A sentence ends at Western .?! (plus closing quotes/brackets) before whitespace, at CJK 。！？； (no
# whitespace needed), or at a line break. The leading character class lets the regex engine skip ahead fast.
_BOUNDARY = re.compile(
    r"[.?!。！？；\n]"
    r"(?:(?<=[.?!])[.?!]*[\"'”’)\]]*(?=\s)"
    r"|(?<=[。！？；])[。！？；]*[\"'”’」』）)]*"
    r"|(?<=\n))"
)
_WORD_BEFORE = re.compile(r"[^\s(\[\"'“‘]*$")
_INITIALS = re.compile(r"(?:[a-z]\.)*[a-z]")  # "e.g", "U.S", "J" (initials)
_ABBREVIATIONS = frozenset(
    {
        "al", "approx", "apr", "aug", "cf", "co", "corp", "dec", "dept", "dr", "etc", "feb", "fig", "figs",
        "inc", "jan", "jr", "jul", "jun", "ltd", "mar", "mr", "mrs", "ms", "mt", "no", "nov", "oct", "prof",
        "sep", "sept", "sr", "st", "vol", "vols", "vs",
    }
)  # fmt: skip


@dataclass(frozen=True)
class ChunkSpan:
    """``text == document.text[start:end]``, stripped; heading/page are those of the enclosing section."""

    start: int
    end: int
    text: str
    token_count: int
    heading: str | None
    page: int | None


class _Sentence(NamedTuple):
    start: int
    end: int
    cost: int  # tokens of the sentence plus the whitespace before it; packing re-checks exactly


class Chunker:
    """Token-aware, sentence-respecting splitter with overlap."""

    def __init__(self, chunk_tokens: int = 200, overlap_tokens: int = 30) -> None:
        if chunk_tokens < MIN_CHUNK_TOKENS:
            raise ValueError(f"chunk_tokens must be >= {MIN_CHUNK_TOKENS}, got {chunk_tokens}")
        if not 0 <= overlap_tokens < chunk_tokens:
            raise ValueError(f"overlap_tokens must be in [0, chunk_tokens), got {overlap_tokens}")
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    def split(self, document: ParsedDocument) -> list[ChunkSpan]:
        """Chunks of every section in order; a chunk never crosses a section boundary."""
        return [
            ChunkSpan(start, end, document.text[start:end], tokens, section.heading, section.page)
            for section in document.sections
            for start, end, tokens in self._split_section(document.text, section)
        ]

    def _split_section(self, text: str, section: Section) -> Iterator[tuple[int, int, int]]:
        """Greedy packing of whole sentences; the next chunk re-uses trailing sentences as overlap."""
        sentences = _sentences(text, section.start, section.end)
        i = done = 0  # sentences[:done] are already in emitted chunks
        while done < len(sentences):
            j, tokens = self._fit(text, sentences, i, self._extend(sentences, i))
            if j <= done and i < done:  # the overlap left no room for a new sentence: drop it
                i = done
                continue
            if j <= done:  # one sentence longer than a chunk
                yield from self._windows(text, sentences[i])
                i = done = i + 1
                continue
            yield sentences[i].start, sentences[j - 1].end, tokens
            done = j
            i = self._overlap_start(sentences, i, j)

    def _extend(self, sentences: list[_Sentence], i: int) -> int:
        """End (exclusive) of the longest run from ``i`` whose estimated tokens fit in a chunk."""
        j, total = i, 0
        while j < len(sentences) and total + sentences[j].cost <= self.chunk_tokens:
            total += sentences[j].cost
            j += 1
        return j

    def _fit(self, text: str, sentences: list[_Sentence], i: int, j: int) -> tuple[int, int]:
        """Count ``sentences[i:j]`` exactly and drop trailing sentences in the rare case the estimate was low.

        Returns ``(i, 0)`` when even ``sentences[i]`` alone does not fit.
        """
        while j > i:
            tokens = count_tokens(text[sentences[i].start : sentences[j - 1].end])
            if tokens <= self.chunk_tokens:
                return j, tokens
            j -= 1
        return i, 0

    def _overlap_start(self, sentences: list[_Sentence], i: int, j: int) -> int:
        """First sentence of the next chunk: trailing whole sentences of ``[i, j)`` within the overlap budget
        that still leave room for sentence ``j``."""
        if j >= len(sentences):
            return j
        k, overlap = j, 0
        room = self.chunk_tokens - sentences[j].cost
        while k - 1 > i and overlap + sentences[k - 1].cost <= min(self.overlap_tokens, room):
            overlap += sentences[k - 1].cost
            k -= 1
        return k

    def _windows(self, text: str, sentence: _Sentence) -> Iterator[tuple[int, int, int]]:
        """Cut an over-long sentence at token boundaries into overlapping windows of at most chunk_tokens."""
        piece = text[sentence.start : sentence.end]
        offsets = _token_char_offsets(piece)
        n_tokens = len(offsets) - 1
        stride = self.chunk_tokens - self.overlap_tokens
        previous: tuple[int, int] | None = None
        for first in range(0, n_tokens, stride):
            last = min(first + self.chunk_tokens, n_tokens)
            window = self._fit_window(piece, offsets, first, last)
            if window and window[:2] != previous:
                previous = window[:2]
                yield sentence.start + window[0], sentence.start + window[1], window[2]
            if last == n_tokens:
                return

    def _fit_window(
        self, piece: str, offsets: list[int], first: int, last: int
    ) -> tuple[int, int, int] | None:
        """Strip the window's edges and shrink it until its exact count fits (stripping can re-tokenize)."""
        while last > first:
            start, end = _strip(piece, offsets[first], offsets[last])
            tokens = count_tokens(piece[start:end]) if end > start else 0
            if tokens <= self.chunk_tokens:
                return (start, end, tokens) if tokens else None
            last -= 1
        return None


def _sentences(text: str, start: int, end: int) -> list[_Sentence]:
    """Stripped sentence spans of ``text[start:end]``, each with its estimated token cost."""
    sentences: list[_Sentence] = []
    previous_end = None
    for a, b in _sentence_bounds(text, start, end):
        a, b = _strip(text, a, b)
        if a == b:
            continue
        cost = count_tokens(text[a if previous_end is None else previous_end : b])
        sentences.append(_Sentence(a, b, cost))
        previous_end = b
    return sentences


def _sentence_bounds(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    cut = start
    for match in _BOUNDARY.finditer(text, start, end):
        if match.group().startswith(".") and _is_abbreviation(text, match.start()):
            continue
        yield cut, match.end()
        cut = match.end()
    yield cut, end


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the '.' at ``dot`` ends an abbreviation ("e.g.", "Dr.", "U.S.") rather than a sentence."""
    word = _WORD_BEFORE.search(text, max(0, dot - 20), dot).group().lower()
    return word in _ABBREVIATIONS or _INITIALS.fullmatch(word) is not None


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` past leading and trailing whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _token_char_offsets(piece: str) -> list[int]:
    """Character offset of every token boundary of ``piece`` (first 0, last ``len(piece)``).

    Cumulative byte lengths of the decoded tokens, mapped to characters. A token may end inside a multi-byte
    character (common in Chinese); that boundary moves back to the character's start, so every offset is a
    valid string index and the text round-trips.
    """
    enc = encoding()
    token_ends = accumulate(len(enc.decode_single_token_bytes(token)) for token in enc.encode_ordinary(piece))
    char_ends = list(accumulate(len(char.encode("utf-8")) for char in piece))
    return [0] + [bisect_right(char_ends, byte_end) for byte_end in token_ends]
