"""Token-budget trim: the sentences that carry the answer, within the request's budget.

Every sentence of the ranked passages gets a priority: its passage's score times how strongly it matches
the question's terms (idf-weighted over the candidate sentences, so a rare term counts more than a common
one). Sentences are kept best-priority first while they fit in the budget and clear a floor; what is kept
is shown in document order inside each passage, passages in rank order. A passage therefore loses its
weak sentences before a better passage loses anything, and leaves entirely only when none of its
sentences earns a place. Each kept passage records the exact spans it kept, so citations quote text the
model really saw.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from rag.sentences import sentence_spans
from rag.tokens import count_tokens, token_prefix
from rag.types import Passage

Tokenizer = Callable[[str], list[str]]
SEPARATOR_TOKENS = 1  # kept sentences of one passage are joined by a newline


@dataclass(frozen=True)
class TrimParams:
    """``floor``: a sentence whose priority is below this share of the best sentence's is dropped even
    when the budget has room (tokens spent on it rarely change the answer). ``match_weight``: how much
    of a sentence's priority comes from its term match versus its passage's score alone (0 keeps whole
    passages in rank order, like a plain top-k)."""

    floor: float = 0.0
    match_weight: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor <= 1.0 or not 0.0 <= self.match_weight <= 1.0:
            raise ValueError("floor and match_weight must be within [0, 1]")


@dataclass(frozen=True)
class _Sentence:
    passage: int
    span: tuple[int, int]
    tokens: int
    priority: float


def trim_to_budget(
    passages: Sequence[Passage],
    token_budget: int,
    question_terms: Sequence[str] = (),
    tokenize: Tokenizer | None = None,
    params: TrimParams = TrimParams(),
) -> list[Passage]:
    """Passages (best first, scores ≥ 0) cut to at most ``token_budget`` tokens of passage text."""
    if token_budget <= 0 or not passages:
        return []
    sentences = _score_sentences(passages, question_terms, tokenize, params)
    best = max((s.priority for s in sentences), default=0.0)
    kept: dict[int, list[tuple[int, int]]] = {}
    used = 0
    for sentence in sorted(sentences, key=lambda s: (-s.priority, s.passage, s.span)):
        if best > 0 and sentence.priority < params.floor * best:
            break
        cost = sentence.tokens + SEPARATOR_TOKENS
        if used + cost <= token_budget:
            kept.setdefault(sentence.passage, []).append(sentence.span)
            used += cost
    if not kept:
        # Not even one sentence fits: cut the best passage to the budget so the prompt is never empty.
        return [_cut(passages[0], token_budget)]
    sentences_in = Counter(sentence.passage for sentence in sentences)
    out = []
    for index in sorted(kept):
        spans = tuple(sorted(kept[index]))
        whole = len(spans) == sentences_in[index]  # every sentence of the passage was kept
        out.append(replace(passages[index], kept=() if whole else spans))
    return out


def _score_sentences(
    passages: Sequence[Passage], question_terms: Sequence[str], tokenize: Tokenizer | None, params: TrimParams
) -> list[_Sentence]:
    raw: list[tuple[int, tuple[int, int], int, set[str]]] = []
    for index, passage in enumerate(passages):
        text = passage.chunk.text
        for span in sentence_spans(text):
            piece = text[span[0] : span[1]]
            terms = set(tokenize(piece)) if tokenize and question_terms else set()
            raw.append((index, span, count_tokens(piece), terms))
    wanted = set(question_terms)
    document_frequency = Counter(term for *_, terms in raw for term in terms & wanted)
    n = len(raw)

    def match(terms: set[str]) -> float:
        return sum(math.log(1 + n / document_frequency[t]) for t in terms & wanted)

    matches = [match(terms) for *_, terms in raw]
    top_match = max(matches, default=0.0) or 1.0
    top_score = max((p.score for p in passages), default=0.0)
    out = []
    for (index, span, tokens, _), m in zip(raw, matches):
        # Rank still orders passages whose scores tie (or are all zero).
        passage_part = passages[index].score / top_score if top_score > 0 else 1.0
        passage_part = passage_part * (1.0 - 1e-3 * index)
        priority = passage_part * ((1 - params.match_weight) + params.match_weight * m / top_match)
        out.append(_Sentence(index, span, tokens, priority))
    return out


def _cut(passage: Passage, token_budget: int) -> Passage:
    return replace(passage, kept=((0, len(token_prefix(passage.chunk.text, token_budget))),))
