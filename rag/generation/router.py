"""Tiered routing: the cheap tier answers first, and a check of its answer against the kept context
decides whether the strong tier is worth paying for (a cascade, as in FrugalGPT).

The check needs no model call: a grounded answer to an extractive question is made of the context's own
words, so an answer whose words the context does not hold, an abstention, or a rambling reply is the
cheap model failing, and only then does the strong tier run. The thresholds are fitted on DEV data by
``evals/fit_routing.py`` and shipped as ``rag/generation/params/routing.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

from rag.generation.evidence import PairScorer, answer_evidence, holds_answer
from rag.generation.prompt import is_abstention
from rag.sentences import sentence_spans
from rag.types import Passage

ROUTING_FILE = Path(__file__).parent / "params" / "routing.json"
# abstain_min_score at or below this turns the score check off.
NO_SCORE_CHECK = -100.0

# Questions answered by yes or no: the answer's words are never in the context, so support says nothing.
_YES_NO = re.compile(r"^(yes|no)\b[.!]?$", re.IGNORECASE)
# A number alone (a year, a count): in a context of several passages it has look-alikes.
_NUMBER = re.compile(r"^\W*\d[\d,.\s]*\W*$")


@dataclass(frozen=True)
class RoutingParams:
    # Share of the answer's index terms that the kept context must hold for the cheap answer to stand.
    min_support: float = 1.0
    # A cheap answer longer than this many words escalates: the prompt asks for a few words, and a small
    # model that writes sentences is usually unsure.
    max_answer_words: int = 12
    # Send a cheap "I don't know" to the strong tier (it may find what the small model missed).
    escalate_abstention: bool = True
    # Trust a cheap yes/no answer (support cannot judge one).
    accept_yes_no: bool = True
    # The cheap model's own doubt: below this lowest chosen-token probability its answer escalates
    # (0 turns the check off; a backend that reports no probabilities skips it).
    min_confidence: float = 0.0
    # ... and the bar when the trimmed context holds at least ``many_passages`` passages: evidence spread
    # over several passages (multi-hop questions) is where the strong model gained least over the cheap
    # one on DEV data (hotpotqa F1 0.444 against 0.436), so paying for it there buys little.
    many_passages: int = 3
    min_confidence_many: float = 0.0
    # ... only when linking chose those passages (``retrieval/linking.py``), the multi-hop case the bar
    # was fitted for. Several chunks retrieved for a one-paragraph question are not spread evidence: on
    # cmrc2018 every cheap answer the lower bar let through in such a context was worse than the strong
    # tier's (2 of 2 on the DEV sample, 3 of 3 on other questions: "黄色" for "白色粉末"), while on the
    # English sets it changed 5 answers, none for the worse. Measured in docs/results/quality.md.
    many_passages_linked_only: bool = False
    # ... and the bar for a short answer (at most ``linked_max_words`` words) when linking chose the
    # context (``retrieval/linking.py``: the best passage names the page of the next hop). On the multi-hop
    # DEV questions the cheap model's answers of at most two tokens were worse than the strong model's in 2
    # of 61, whatever its token probability; of the short answers this bar let through, the worse ones
    # were all numbers (years, populations: several passages hold look-alikes), so numbers keep the
    # usual bar. 0 words turns it off. Measured in docs/results/quality.md.
    linked_max_words: int = 0
    min_confidence_linked: float = 0.0
    # An answer whose terms are more than this share the question's own restates the question instead of
    # answering it ("The Manchester Terrier ancestors include Gordon and Irish Setters."); 1.0 turns the
    # check off. Answers of one or two terms are exempt: picking one of the options a question names
    # ("Who is older, A or B?") is all question words too.
    max_echo: float = 1.0
    # Grounding, for the served answer whatever tier wrote it: say "I don't know" instead of an answer
    # that no sentence of the context holds (its words came from the model's memory, not the documents).
    # Yes/no answers are exempt.
    abstain_ungrounded: bool = False
    # ... and instead of one whose best holding sentence scores below this cross-encoder logit against
    # the question (lifted from a sentence that does not answer it). NO_SCORE_CHECK turns it off.
    abstain_min_score: float = NO_SCORE_CHECK

    @property
    def checks_grounding(self) -> bool:
        return self.abstain_ungrounded or self.abstain_min_score > NO_SCORE_CHECK

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_support <= 1.0:
            raise ValueError("min_support must be within [0, 1]")
        if self.max_answer_words < 1:
            raise ValueError("max_answer_words must be at least 1")
        if not (0.0 <= self.min_confidence <= 1.0 and 0.0 <= self.min_confidence_many <= 1.0):
            raise ValueError("min_confidence and min_confidence_many must be within [0, 1]")
        if self.many_passages < 1:
            raise ValueError("many_passages must be at least 1")
        if self.linked_max_words < 0:
            raise ValueError("linked_max_words must not be negative")
        if not 0.0 <= self.min_confidence_linked <= 1.0:
            raise ValueError("min_confidence_linked must be within [0, 1]")
        if not 0.0 <= self.max_echo <= 1.0:
            raise ValueError("max_echo must be within [0, 1]")


@dataclass(frozen=True)
class Verdict:
    accept: bool
    reason: str
    support: float | None = None


class CascadeRouter:
    """Judges a cheap tier's answer, and whether the served answer is grounded in the context.
    ``analyze`` turns text into the same terms the BM25 index uses; ``scorer`` is the cross-encoder,
    needed only by the grounding check's score bar."""

    def __init__(
        self, params: RoutingParams, analyze: Callable[[str], list[str]], scorer: PairScorer | None = None
    ) -> None:
        if params.abstain_min_score > NO_SCORE_CHECK and scorer is None:
            raise ValueError("abstain_min_score needs a cross-encoder to score sentences with")
        self.params = params
        self._analyze = analyze
        self._scorer = scorer

    def support(self, answer: str, passages: Sequence[Passage]) -> float | None:
        """Share of the answer's terms found in the context; None when the answer has no terms."""
        wanted = set(self._analyze(answer))
        if not wanted:
            return None
        context: set[str] = set()
        for passage in passages:
            context.update(self._analyze(passage.text))
            context.update(self._analyze(passage.chunk.title))
        return len(wanted & context) / len(wanted)

    def echo(self, answer: str, question: str) -> float | None:
        """Share of the answer's terms that the question holds; None for an answer of fewer than 3 terms."""
        wanted = set(self._analyze(answer))
        if len(wanted) < 3:
            return None
        return len(wanted & set(self._analyze(question))) / len(wanted)

    def check(
        self,
        answer: str,
        passages: Sequence[Passage],
        confidence: float | None = None,
        question: str = "",
        linked: bool = False,
    ) -> Verdict:
        """``confidence``: the cheap model's lowest chosen-token probability, if its backend reports one;
        ``question``: what was asked (an answer that only restates it escalates); ``linked``: whether
        linking chose the passages."""
        p = self.params
        if is_abstention(answer):
            if p.escalate_abstention:
                return Verdict(False, "the cheap tier abstained")
            return Verdict(True, "the cheap tier abstained; abstentions are not escalated")
        words = len(answer.split())
        spread = len(passages) >= p.many_passages and (linked or not p.many_passages_linked_only)
        bar = p.min_confidence_many if spread else p.min_confidence
        if linked and words <= p.linked_max_words and not _NUMBER.match(answer):
            bar = min(bar, p.min_confidence_linked)
        if confidence is not None and confidence < bar:
            return Verdict(False, f"the cheap model was unsure (token probability {confidence:.2f} < {bar})")
        if _YES_NO.match(answer.strip()):
            if p.accept_yes_no:
                return Verdict(True, "a yes/no answer from the cheap tier")
            return Verdict(False, "yes/no answers are escalated")
        if words > p.max_answer_words:
            return Verdict(False, f"the cheap answer runs to {words} words (limit {p.max_answer_words})")
        echo = self.echo(answer, question) if question else None
        if echo is not None and echo > p.max_echo:
            return Verdict(False, f"{echo:.0%} of the cheap answer's terms only restate the question")
        support = self.support(answer, passages)
        if support is None:
            return Verdict(True, "the cheap answer has no terms to check", None)
        if support < p.min_support:
            return Verdict(False, f"only {support:.0%} of the cheap answer's terms are in the context", support)
        return Verdict(True, f"{support:.0%} of the cheap answer's terms are in the context", support)


    def grounded(self, question: str, answer: str, passages: Sequence[Passage]) -> Verdict:
        """Whether the served ``answer`` may stand, or the service should say the documents do not hold
        one (the checks ``abstain_ungrounded`` and ``abstain_min_score``)."""
        p = self.params
        if not p.checks_grounding or is_abstention(answer) or _YES_NO.match(answer.strip()):
            return Verdict(True, "no grounding check applies")
        if p.abstain_min_score <= NO_SCORE_CHECK:
            held = any(
                holds_answer(answer, passage.text[a:b], self._analyze)
                for passage in passages
                for a, b in sentence_spans(passage.text)
            )
            if not held:
                return Verdict(False, "no sentence of the documents holds the answer")
            return Verdict(True, "a sentence of the documents holds the answer")
        assert self._scorer is not None  # checked at construction
        evidence = answer_evidence(question, answer, passages, self._scorer, self._analyze)
        if evidence.answer_score is None:
            if p.abstain_ungrounded:
                return Verdict(False, "no sentence of the documents holds the answer")
            return Verdict(True, "no sentence holds the answer; only the score bar applies")
        if evidence.answer_score < p.abstain_min_score:
            return Verdict(
                False,
                f"the sentence holding the answer scores {evidence.answer_score:.1f} for the question "
                f"(bar {p.abstain_min_score})",
            )
        return Verdict(True, f"the sentence holding the answer scores {evidence.answer_score:.1f}")


def parse_routing(data: dict) -> RoutingParams:
    return RoutingParams(**data)


def with_overrides(params: RoutingParams, overrides: Mapping[str, object]) -> RoutingParams:
    """``params`` with some fields replaced by name (settings' ``router``), each read as the type of the
    field it replaces, so that ``RAG_ROUTER__MAX_ANSWER_WORDS=8`` from the environment is an int."""
    current = asdict(params)
    unknown = sorted(set(overrides) - set(current))
    if unknown:
        raise ValueError(f"unknown router settings {unknown}; known: {sorted(current)}")
    typed: dict[str, object] = {}
    for name, value in overrides.items():
        kind = type(current[name])
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"router setting {name} must be true or false, not {value!r}")
            typed[name] = value.lower() in ("true", "1")
        elif kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"router setting {name} must be a whole number, not {value!r}")
        else:
            typed[name] = kind(value)
    return replace(params, **typed)


@lru_cache(maxsize=1)
def load_routing(path: Path = ROUTING_FILE) -> RoutingParams:
    return parse_routing(json.loads(path.read_text()))


def routing_json(params: RoutingParams) -> str:
    return json.dumps(asdict(params), indent=2) + "\n"
