"""Token-budget trim: the passages that fit in the prompt, in rank order."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from rag.tokens import encoding
from rag.types import Passage


def trim_to_budget(passages: Sequence[Passage], token_budget: int) -> list[Passage]:
    """Keep whole passages, best first, while their tokens fit; a first passage larger than the whole
    budget is cut to it so that the prompt is never empty. Kept text stays a prefix of the chunk, so a
    citation of it points at text that was really sent."""
    kept: list[Passage] = []
    used = 0
    for passage in passages:
        tokens = passage.chunk.token_count
        if used + tokens <= token_budget:
            kept.append(passage)
            used += tokens
        elif not kept:
            kept.append(_cut(passage, token_budget))
            break
    return kept


def _cut(passage: Passage, token_budget: int) -> Passage:
    enc = encoding()
    ids = enc.encode_ordinary(passage.chunk.text)[:token_budget]
    text = enc.decode(ids, errors="ignore")  # a prefix of the chunk text: a split character is dropped
    chunk = replace(passage.chunk, text=text, end=passage.chunk.start + len(text), token_count=len(ids))
    return replace(passage, chunk=chunk)
