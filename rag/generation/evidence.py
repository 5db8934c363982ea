"""Where in the prompt's context an answer stands, judged by the cross-encoder already loaded for rerank.

A grounded extractive answer is copied from one sentence, and that sentence answers the question: the
cross-encoder (question, sentence) should rank it at or near the top of the context's sentences. An
answer found only in sentences the cross-encoder ranks low was likely lifted from a distractor; an
answer found nowhere was not read in the context at all. These signals cost CPU time, not tokens, and
they also pick the few sentences a short verification prompt shows (``rag/generation/prompt.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rag.sentences import sentence_spans
from rag.types import Passage

_SPACE = re.compile(r"\s+")
_EDGE_PUNCTUATION = " .,;:!?\"'()[]«»“”‘’。，；：！？、（）"


class PairScorer(Protocol):
    """A cross-encoder: one relevance logit per (query, text) pair (``retrieval.rerank.OnnxCrossEncoder``)."""

    def score(self, query: str, passages: Sequence[str]) -> Sequence[float]: ...


@dataclass(frozen=True)
class ScoredSentence:
    passage: int  # index in the prompt's passages
    position: int  # index of the sentence in its passage
    text: str
    score: float  # the cross-encoder's logit for (question, title + sentence)


@dataclass(frozen=True)
class AnswerEvidence:
    sentences: tuple[ScoredSentence, ...]  # the context's sentences, best score first
    holding: tuple[int, ...]  # indexes (into ``sentences``) of the sentences that hold the answer

    @property
    def top_score(self) -> float | None:
        return self.sentences[0].score if self.sentences else None

    @property
    def answer_rank(self) -> int | None:
        """Rank of the best sentence holding the answer (0: the top sentence); None if none holds it."""
        return self.holding[0] if self.holding else None

    @property
    def answer_score(self) -> float | None:
        return self.sentences[self.holding[0]].score if self.holding else None

    @property
    def margin(self) -> float | None:
        """How far the answer's best sentence scores below the top sentence (0 when it is the top)."""
        if not self.holding or self.top_score is None:
            return None
        return self.top_score - self.sentences[self.holding[0]].score

    def shown(self, top: int = 2) -> list[ScoredSentence]:
        """What a verification prompt shows: the ``top`` best sentences and the best one holding the answer,
        in the context's order."""
        picked = set(range(min(top, len(self.sentences))))
        if self.holding:
            picked.add(self.holding[0])
        return sorted((self.sentences[i] for i in picked), key=lambda s: (s.passage, s.position))


def _normalize(text: str) -> str:
    return _SPACE.sub(" ", text.lower()).strip(_EDGE_PUNCTUATION)


def holds_answer(answer: str, sentence: str, analyze: Callable[[str], list[str]]) -> bool:
    """The sentence contains the answer: as a string (case and spacing aside), or every index term of
    the answer (stemmed, as BM25 reads it) is among the sentence's."""
    wanted = _normalize(answer)
    if not wanted:
        return False
    if wanted in _normalize(sentence):
        return True
    terms = set(analyze(answer))
    return bool(terms) and terms <= set(analyze(sentence))


def answer_evidence(
    question: str,
    answer: str,
    passages: Sequence[Passage],
    scorer: PairScorer,
    analyze: Callable[[str], list[str]],
) -> AnswerEvidence:
    """Every sentence of the prompt's passages scored against the question, and which hold ``answer``."""
    pieces: list[tuple[int, int, str]] = []
    for index, passage in enumerate(passages):
        text = passage.text
        for position, (start, end) in enumerate(sentence_spans(text)):
            pieces.append((index, position, text[start:end]))
    if not pieces:
        return AnswerEvidence((), ())
    titled = [f"{passages[i].chunk.title}\n{sentence}" for i, _, sentence in pieces]
    scores = [float(x) for x in scorer.score(question, titled)]
    scored = sorted(
        (ScoredSentence(index, position, sentence, score) for (index, position, sentence), score in zip(pieces, scores)),
        key=lambda s: -s.score,
    )
    holding = tuple(i for i, s in enumerate(scored) if holds_answer(answer, s.text, analyze))
    return AnswerEvidence(tuple(scored), holding)
