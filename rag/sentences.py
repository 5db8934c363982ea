"""Sentence spans of a text (English and CJK punctuation, and line breaks), as character offsets."""

from __future__ import annotations

import re

# A sentence ends at . ! ? followed by space, at CJK full stops (no space follows them), or at a line break.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+|(?<=[。！？；])\s*|\n+")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering every non-blank sentence; ``text[start:end]`` has no outer space."""
    spans: list[tuple[int, int]] = []
    position = 0
    for match in _BOUNDARY.finditer(text):
        if match.end() == 0:
            continue
        _append(text, position, match.start(), spans)
        position = match.end()
    _append(text, position, len(text), spans)
    return spans


def _append(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        left = start + (len(piece) - len(piece.lstrip()))
        spans.append((left, left + len(stripped)))
