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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

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
    # Concentrated evidence: when at most ``focus_max_passages`` passages survive ``floor``, the trim is
    # redone at ``focus_floor``. Small models answer a single-passage question better without the
    # near-miss sentences around its answer, while evidence spread over many passages needs them all
    # (evals/fit_trim.py). 0 turns it off.
    focus_max_passages: int = 0
    focus_floor: float = 0.0

    def __post_init__(self) -> None:
        if not all(0.0 <= x <= 1.0 for x in (self.floor, self.match_weight, self.focus_floor)):
            raise ValueError("floor, match_weight and focus_floor must be within [0, 1]")
        if self.focus_max_passages < 0:
            raise ValueError("focus_max_passages must not be negative")


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
    sentences = sorted(
        _score_sentences(passages, question_terms, tokenize, params),
        key=lambda s: (-s.priority, s.passage, s.span),
    )
    kept = _select(sentences, token_budget, params.floor)
    if 0 < len(kept) <= params.focus_max_passages:
        kept = _select(sentences, token_budget, params.focus_floor)
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


def _select(ranked: Sequence[_Sentence], token_budget: int, floor: float) -> dict[int, list[tuple[int, int]]]:
    """Best-priority sentences first, while they fit in the budget and reach ``floor`` × the best priority;
    their spans by passage."""
    best = ranked[0].priority if ranked else 0.0
    kept: dict[int, list[tuple[int, int]]] = {}
    used = 0
    for sentence in ranked:
        if best > 0 and sentence.priority < floor * best:
            break
        cost = sentence.tokens + SEPARATOR_TOKENS
        if used + cost <= token_budget:
            kept.setdefault(sentence.passage, []).append(sentence.span)
            used += cost
    return kept


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
