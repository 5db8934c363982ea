"""The query path: budget → validate → embed → answer cache → retrieve (within the token budget) →
generate (cheap tier, then the strong one if the router escalates) → cite → count → cache the answer.

``answer_stream`` is the one implementation: it yields the answer's text as it is generated and ends
with the ``Answer``; ``answer`` drains it. A stream the caller abandons still has its tokens counted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import numpy as np

from rag.cache.semantic import CachedAnswer, CacheLookup, SemanticCache
from rag.conversation.rewriter import FollowUpRewriter
from rag.errors import DeadlineExceeded, InvalidRequest, Overloaded
from rag.generation.abstention import AbstentionCheck
from rag.generation.gate import GenerationGate
from rag.generation.llm.base import LLM, ChatMessage, Generation
from rag.generation.prompt import NO_ANSWER, build_messages, citations_for, is_abstention, split_answer
from rag.generation.router import CascadeRouter
from rag.settings import Settings
from rag.tokens import count_tokens
from rag.types import Answer, Passage, Retrieval, Route, TierUsage, Turn, Usage
from rag.usage.accounting import CACHE_HIT, cost_usd, count_prompt_tokens, generation_usage, total_usage
from rag.usage.ledger import UsageLedger


class Retriever(Protocol):
    def retrieve(
        self, tenant: str, question: str, top_k: int, token_budget: int, query_vector: np.ndarray | None = None
    ) -> Retrieval: ...


_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str, every surrogate is unpaired (pairs decode to one char)
# An earlier answer in a conversation's history may be this many times as long as a question.
ANSWER_CHARS_PER_QUESTION_CHAR = 10


T = TypeVar("T")


@dataclass
class _Prepared:
    """A question up to the answer cache: what the rest of the answer starts from."""

    question: str  # standalone: the follow-up rewritten
    spent: list[TierUsage]  # model calls already paid (a rewrite)
    conversation: dict[str, object]
    vector: np.ndarray
    embedding_tokens: int
    lookup: CacheLookup | None
    embed_ms: float
    cache_ms: float


class QueryPipeline:
    def __init__(
        self,
        settings: Settings,
        retriever: Retriever,
        llms: Mapping[str, LLM],
        embed_query: Callable[[str], np.ndarray],
        cache: SemanticCache | None = None,
        router: CascadeRouter | None = None,
        ledger: UsageLedger | None = None,
        rewriter: FollowUpRewriter | None = None,
        gate: GenerationGate | None = None,
        analyze: Callable[[str], list[str]] | None = None,
    ) -> None:
        """``analyze``: the BM25 analyzer, for the abstention check of questions the cross-encoder does not
        score (without it that check is off)."""
        missing = set(settings.tiers) - set(llms)
        if missing:
            raise ValueError(f"no LLM for tiers {sorted(missing)}")
        if settings.routing == "cascade" and router is None:
            raise ValueError("routing 'cascade' needs a router")
        self._settings = settings
        self._router = router
        self._ledger = ledger
        self._retriever = retriever
        self._llms = llms
        self._embed_query = embed_query
        self._cache = cache
        self._rewriter = rewriter
        self._gate = gate
        self._abstention = (
            AbstentionCheck(
                settings.abstain_below_relevance, settings.abstain_below_coverage if analyze else 0.0, analyze
            )
            if settings.abstain_unsupported
            else None
        )

    def validate(self, question: str, top_k: int | None, token_budget: int | None) -> tuple[str, int, int]:
        s = self._settings
        question = question.strip()
        if not question:
            raise InvalidRequest("question must not be empty")
        surrogate = _SURROGATE.search(question)
        if surrogate:  # JSON can carry "\ud800"; no tokenizer can encode it
            raise InvalidRequest(
                f"question is not valid Unicode (unpaired surrogate U+{ord(surrogate.group()):04X} "
                f"at character {surrogate.start()})"
            )
        if len(question) > s.max_question_chars:
            raise InvalidRequest(f"question is {len(question)} characters; the limit is {s.max_question_chars}")
        top_k = s.top_k if top_k is None else top_k
        if not 1 <= top_k <= s.max_top_k:
            raise InvalidRequest(f"top_k must be between 1 and {s.max_top_k}")
        token_budget = s.token_budget if token_budget is None else token_budget
        if not 64 <= token_budget <= s.max_token_budget:
            raise InvalidRequest(f"token_budget must be between 64 and {s.max_token_budget}")
        return question, top_k, token_budget

    def answer(
        self,
        question: str,
        tenant: str,
        top_k: int | None = None,
        token_budget: int | None = None,
        max_answer_tokens: int | None = None,
        history: Sequence[Turn] = (),
        deadline: float | None = None,
    ) -> Answer:
        stream = self.answer_stream(question, tenant, top_k, token_budget, max_answer_tokens, history, deadline)
        for event in stream:
            if isinstance(event, Answer):
                return event
        raise AssertionError("answer_stream ended without an Answer")

    def answer_stream(
        self,
        question: str,
        tenant: str,
        top_k: int | None = None,
        token_budget: int | None = None,
        max_answer_tokens: int | None = None,
        history: Sequence[Turn] = (),
        deadline: float | None = None,
    ) -> Iterator[str | Answer]:
        """Pieces of the answer's text as they are generated, then the ``Answer`` itself.

        Validation, the budget check, the answer cache and (on a miss) admission to generation run before
        the first item, so a refused question raises at once and a cache hit never waits for generation.
        ``deadline`` (``time.monotonic()`` seconds): past it while waiting for generation, the question is
        dropped before any model call (``DeadlineExceeded``).
        ``max_answer_tokens`` lowers the answer's token limit for this question (never above the setting).
        ``history``: the conversation's earlier turns; a follow-up is made standalone before the answer
        cache and retrieval see it (``rag/conversation``), and what that cost is in the usage block.
        """
        started = time.perf_counter()
        s = self._settings
        mode = self._ledger.admit(tenant, s.budget_usd_per_day, s.budget_cheap_only_from) if self._ledger else "normal"
        question, top_k, token_budget = self.validate(question, top_k, token_budget)
        if max_answer_tokens is not None and max_answer_tokens < 1:
            raise InvalidRequest("the answer's token limit must be at least 1")
        limit = min(max_answer_tokens or s.max_answer_tokens, s.max_answer_tokens)
        history = self.validate_history(history)
        prepared = self._prepare(question, tenant, history, started)
        if prepared.lookup is not None and prepared.lookup.hit:
            return self._cached(prepared, tenant, started)
        if self._gate is not None:
            try:
                self._gate.admit(tenant)
            except Overloaded:
                self._refused(tenant, prepared.spent, "admission")
                raise
        return self._stream(prepared, tenant, top_k, token_budget, mode == "cheap_only", started, limit, deadline)

    def validate_history(self, history: Sequence[Turn]) -> tuple[Turn, ...]:
        s = self._settings
        if len(history) > s.max_history_turns:
            raise InvalidRequest(f"history has {len(history)} turns; the limit is {s.max_history_turns}", "history")
        longest = s.max_question_chars * ANSWER_CHARS_PER_QUESTION_CHAR
        for number, turn in enumerate(history, start=1):
            if len(turn.question) > s.max_question_chars or len(turn.answer) > longest:
                raise InvalidRequest(
                    f"history turn {number} is too long (questions up to {s.max_question_chars} characters, "
                    f"answers up to {longest})",
                    "history",
                )
            if _SURROGATE.search(turn.question + turn.answer):
                raise InvalidRequest(f"history turn {number} is not valid Unicode (an unpaired surrogate)", "history")
        return tuple(history)

    def _prepare(self, question: str, tenant: str, history: tuple[Turn, ...], started: float) -> _Prepared:
        """A follow-up made standalone, the question embedded, the answer cache asked."""
        spent: list[TierUsage] = []  # every model call, appended as soon as it ends or is abandoned
        conversation: dict[str, object] = {}
        if history and self._rewriter is not None:
            rewrite = self._rewriter.rewrite(question, history)
            spent += rewrite.generations
            conversation = {"asked": question, "searched": rewrite.question, "reason": rewrite.reason}
            question = rewrite.question
        with self._counted_if_unanswered(tenant, spent):
            vector = self._embed_query(question)  # once: for the cache and for dense retrieval
            after_embed = time.perf_counter()
            lookup = self._cache.lookup(tenant, question, vector) if self._cache else None
        return _Prepared(
            question, spent, conversation, vector, count_tokens(question), lookup,
            embed_ms=(after_embed - started) * 1000, cache_ms=(time.perf_counter() - after_embed) * 1000,
        )

    def _refused(self, tenant: str, spent: list[TierUsage], reason: str) -> None:
        """A question refused under load: counted as such, with any call already paid (a rewrite)."""
        if self._ledger is not None:
            self._ledger.reject(tenant, reason)
        self._record_abandoned(tenant, spent)

    def _cached(self, prepared: _Prepared, tenant: str, started: float) -> Iterator[str | Answer]:
        lookup = prepared.lookup
        assert lookup is not None
        usage = replace(
            total_usage(prepared.spent) if prepared.spent else CACHE_HIT,
            model="cache",
            tier="cache",
            embedding_tokens=prepared.embedding_tokens,
            reference_cost_usd=lookup.answer.reference_cost_usd,
            saved_by=("cache",),
        )
        self._record(tenant, usage, cache_hit=True, escalated=False)
        yield lookup.answer.answer
        yield Answer(
            answer=lookup.answer.answer,
            citations=lookup.answer.citations,
            usage=usage,
            latency_ms=(time.perf_counter() - started) * 1000,
            stage_ms={"embed": prepared.embed_ms, "cache": prepared.cache_ms},
            debug={
                "cache": {"reason": lookup.reason, "cached_question": lookup.cached_question},
                **({"conversation": prepared.conversation} if prepared.conversation else {}),
            },
            cache="hit",
            cache_similarity=lookup.similarity,
            searched_question=prepared.question,
        )

    def _stream(
        self,
        prepared: _Prepared,
        tenant: str,
        top_k: int,
        token_budget: int,
        cheap_only: bool,
        started: float,
        max_tokens: int,
        deadline: float | None,
    ) -> Iterator[str | Answer]:
        question, spent, lookup, vector = prepared.question, prepared.spent, prepared.lookup, prepared.vector
        embedding_tokens, conversation = prepared.embedding_tokens, prepared.conversation
        answer_calls = len(spent)  # the calls before this one made the question, not the answer
        retrieve_started = time.perf_counter()
        with self._counted_if_unanswered(tenant, spent):
            retrieval = self._retriever.retrieve(tenant, question, top_k, token_budget, query_vector=vector)
        after_retrieval = time.perf_counter()
        passages = list(retrieval.passages)
        route: Route | None = None
        finish_reason = "stop"
        finished = False
        unsupported = (
            self._abstention.reason(question, retrieval.best_relevance, passages) if self._abstention else None
        )
        try:
            if not passages or unsupported:
                # Nothing to ground an answer on: asking the model would only pay for a guess.
                text, citations = NO_ANSWER, []
                yield text
            else:
                messages = build_messages(question, passages, self._settings.injection_defense)
                grounding = self._router is not None and self._router.params.checks_grounding
                generation, route = yield from self._in_turn(
                    tenant,
                    deadline,
                    self._generate(
                        question, messages, passages, retrieval.linked, spent, cheap_only, max_tokens, emit=not grounding
                    ),
                )
                raw, finish_reason = generation.text, generation.finish_reason
                text, cited = split_answer(raw, passages)
                if grounding:
                    assert self._router is not None
                    verdict = self._router.grounded(question, text, passages)
                    if not verdict.accept:
                        text, cited = NO_ANSWER, []
                        route = replace(route, reason=f"{route.reason}; answer withheld: {verdict.reason}")
                    yield text
                citations = citations_for(text, cited, passages, question)
            finished = True
        finally:
            if not finished and spent:  # abandoned mid-stream (or failed after an earlier call was paid)
                partial = self._usage(question, spent, answer_calls, retrieval, embedding_tokens, route)
                escalated = len(spent) - answer_calls > 1
                self._record(tenant, partial, cache_hit=False, escalated=escalated, aborted=True)
        text = text or NO_ANSWER
        usage = self._usage(question, spent, answer_calls, retrieval, embedding_tokens, route)
        self._record(tenant, usage, cache_hit=False, escalated=bool(route and route.escalated))
        done = time.perf_counter()
        if self._cache is not None and finish_reason != "length":  # a cut-off answer is not worth reusing
            abstained = not passages or is_abstention(text)
            entry = CachedAnswer(text, tuple(citations), usage.reference_cost_usd)
            self._cache.store(tenant, question, vector, entry, abstained)
        stage_ms = {
            "embed": prepared.embed_ms,
            "cache": prepared.cache_ms,
            "retrieve": (after_retrieval - retrieve_started) * 1000,
            "generate": (done - after_retrieval) * 1000,
        }
        stage_ms.update({f"retrieve.{k}": v for k, v in retrieval.stage_ms.items()})
        debug: dict[str, object] = {"retrieval": retrieval.debug}
        if lookup is not None:
            debug["cache"] = {"reason": lookup.reason}
        if unsupported:
            debug["abstained"] = unsupported
        if conversation:
            debug["conversation"] = conversation
        yield Answer(
            answer=text,
            citations=tuple(citations),
            usage=usage,
            latency_ms=(done - started) * 1000,
            stage_ms=stage_ms,
            debug=debug,
            cache="miss",
            cache_similarity=lookup.similarity if lookup is not None else None,
            route=route,
            finish_reason=finish_reason,
            searched_question=question,
        )

    # -- generation ---------------------------------------------------------------------------------

    def _in_turn(
        self, tenant: str, deadline: float | None, calls: Generator[str, None, T]
    ) -> Generator[str, None, T]:
        """``calls`` (a question's model calls: the cheap one and any escalation) in one slot of the gate,
        taken in the tenant's fair turn; a deadline that passes while waiting drops the question first."""
        if self._gate is None:
            return (yield from calls)
        with ExitStack() as held:
            try:
                held.enter_context(self._gate.slot(tenant, deadline))
            except DeadlineExceeded:
                calls.close()
                if self._ledger is not None:
                    self._ledger.reject(tenant, "deadline")
                raise
            return (yield from calls)

    def _call(
        self, tier: str, messages: list[ChatMessage], spent: list[TierUsage], max_tokens: int, emit: bool
    ) -> Generator[str, None, Generation]:
        """One generation call, its text pieces passed on when ``emit``; its usage lands in ``spent``
        whether it completes or is abandoned (counted on the text generated so far)."""
        settings = self._settings
        stream = self._llms[tier].stream(messages, max_tokens)
        pieces: list[str] = []
        try:
            while True:
                try:
                    piece = next(stream)
                except StopIteration as stop:
                    generation: Generation = stop.value
                    break
                pieces.append(piece)
                if emit:
                    yield piece
        except GeneratorExit:  # the caller left: the prompt was read and these pieces were generated
            spent.append(generation_usage(tier, settings.tiers[tier], messages, "".join(pieces)))
            raise
        finally:
            stream.close()
        spent.append(generation_usage(tier, settings.tiers[tier], messages, generation.text))
        return generation

    def _generate(
        self,
        question: str,
        messages: list[ChatMessage],
        passages: list[Passage],
        linked: bool,
        spent: list[TierUsage],
        cheap_only: bool,
        max_tokens: int,
        emit: bool,
    ) -> Generator[str, None, tuple[Generation, Route]]:
        """One call when routing is fixed; in a cascade the cheap tier first (its answer sent whole once
        the router accepts it), the strong one, streamed, only if the check fails. Near the tenant's
        budget only the cheap tier answers. With ``emit`` off nothing is sent: the caller checks the
        answer's grounding first."""
        s = self._settings
        if cheap_only:
            generation = yield from self._call(s.cheap_tier, messages, spent, max_tokens, emit=emit)
            return generation, Route(s.cheap_tier, "near the tenant's daily budget: cheap tier only")
        if s.routing == "fixed" or self._router is None:
            generation = yield from self._call(s.default_tier, messages, spent, max_tokens, emit=emit)
            return generation, Route(s.default_tier, "routing is fixed")
        cheap = yield from self._call(s.cheap_tier, messages, spent, max_tokens, emit=False)
        answer = split_answer(cheap.text, passages)[0]
        verdict = self._router.check(answer, passages, cheap.confidence, question, linked=linked)
        if verdict.accept:
            if emit:
                yield cheap.text
            return cheap, Route(s.cheap_tier, verdict.reason)
        strong = yield from self._call(s.default_tier, messages, spent, max_tokens, emit=emit)
        return strong, Route(s.default_tier, verdict.reason, escalated=True)

    # -- accounting ---------------------------------------------------------------------------------

    def _usage(
        self,
        question: str,
        spent: list[TierUsage],
        answer_calls: int,
        retrieval: Retrieval,
        embedding_tokens: int,
        route: Route | None,
    ) -> Usage:
        """The answer's usage block: its calls summed (``spent[answer_calls:]`` answered; those before made
        the question standalone), and the reference it is measured against — the strong tier over the
        untrimmed top 10, counted on that prompt with this answer's completion."""
        usage = total_usage(spent)
        reference_cost = None
        saved_by: list[str] = []
        if retrieval.reference_passages:
            strong = self._settings.tiers[self._settings.default_tier]
            reference_messages = build_messages(
                question, retrieval.reference_passages, self._settings.injection_defense
            )
            reference_prompt = count_prompt_tokens(reference_messages)
            answered = spent[answer_calls:]
            completion = answered[-1].completion_tokens if answered else 0
            reference_cost = cost_usd(strong, reference_prompt, completion)
            if not answered:  # abstained before any model was asked
                saved_by.append("abstention")
            elif answered[-1].prompt_tokens < reference_prompt:
                saved_by.append("trim")
            if route is not None and route.tier != self._settings.default_tier:
                saved_by.append("routing")
        return replace(
            usage,
            embedding_tokens=embedding_tokens,
            rerank_tokens=retrieval.rerank_tokens,
            reference_cost_usd=reference_cost,
            saved_by=tuple(saved_by),
        )

    @contextmanager
    def _counted_if_unanswered(self, tenant: str, spent: list[TierUsage]) -> Iterator[None]:
        """Calls already paid for (a follow-up's rewrite) reach the ledger even when a step after them
        fails or the caller leaves before the answer's own accounting."""
        try:
            yield
        except BaseException:
            self._record_abandoned(tenant, spent)
            raise

    def _record_abandoned(self, tenant: str, spent: list[TierUsage]) -> None:
        """Calls paid for a question that got no answer: counted as an aborted one."""
        if spent:
            self._record(tenant, total_usage(spent), cache_hit=False, escalated=False, aborted=True)

    def _record(self, tenant: str, usage: Usage, cache_hit: bool, escalated: bool, aborted: bool = False) -> None:
        if self._ledger is not None:
            self._ledger.record(tenant, usage, cache_hit=cache_hit, escalated=escalated, aborted=aborted)
