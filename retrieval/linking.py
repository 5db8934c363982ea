"""Linked passages: a multi-hop question's next hop is the document its best passage names.

"What government position was held by the woman who portrayed Corliss Archer in the film Kiss and
Tell?" ranks the film's page first; the answer is on "Shirley Temple", a page the question never names
but the film's page does. The knowledge graph already pulls such pages into the ranking, usually below
rank 5, behind passages that share the question's words but lead nowhere. So when a ranked passage's
document title is named by the question or by the best passage, the prompt holds the best passage and
those linked ones (plus any passage the reranker scored nearly as high as the best) instead of the next
ranks: fewer tokens, and the second hop in the prompt. A question with no such link gets the plain top k.
What it buys on each dataset: ``docs/results/quality.md``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.types import Passage

_PARENTHETICAL_RE = re.compile(r"\s*[(（][^()（）]*[)）]\s*$")
_HAN_RE = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True)
class LinkParams:
    """``pool``: how deep in the ranking a linked passage may sit. ``keep_score``: an unlinked passage of
    the top ``top_k`` stays when its score is at least this share of the best one's (above 1: none
    stays). ``min_title_chars``: shorter titles ("Go", "C") name too much to count as a link."""

    enabled: bool = True
    pool: int = 10
    keep_score: float = 0.7
    min_title_chars: int = 3

    def __post_init__(self) -> None:
        if self.pool < 1 or self.min_title_chars < 1:
            raise ValueError("pool and min_title_chars must be at least 1")
        if self.keep_score < 0:
            raise ValueError("keep_score must not be negative")


def title_name(title: str) -> str:
    """How a document's title is written in running text: "Kiss and Tell (1945 film)" → "kiss and tell"."""
    return " ".join(_PARENTHETICAL_RE.sub("", title).split()).casefold()


def names(text: str, name: str) -> bool:
    """Whether ``text`` (case-folded) names ``name`` as a whole word (anywhere, in Chinese)."""
    if _HAN_RE.search(name):
        return name in text
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) is not None


def linked_passages(
    ranked: Sequence[Passage], question: str, top_k: int, params: LinkParams = LinkParams()
) -> list[Passage] | None:
    """The best passage, the passages of ``ranked[:params.pool]`` whose document it or the question
    names, and the top-``top_k`` passages scored within ``keep_score`` of it; at most ``top_k``, in rank
    order. None when nothing is linked: the caller keeps the plain top ``top_k``."""
    if not params.enabled or len(ranked) < 2 or top_k < 2:
        return None
    best = ranked[0]
    seed_title = title_name(best.chunk.title)
    text = f"{question}\n{best.chunk.text}".casefold()
    linked = []
    for passage in ranked[1 : params.pool]:
        name = title_name(passage.chunk.title)
        if name != seed_title and len(name) >= params.min_title_chars and names(text, name):
            linked.append(passage)
    if not linked:
        return None
    chosen = [best, *linked[: top_k - 1]]
    close = [p for p in ranked[1:top_k] if p not in chosen and p.score >= params.keep_score * best.score]
    chosen += close[: top_k - len(chosen)]
    return sorted(chosen, key=lambda p: ranked.index(p))
