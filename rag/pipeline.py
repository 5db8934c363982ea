"""The query path: validate → embed → answer cache → retrieve (within the token budget) → generate →
cite → count → cache the answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np

from rag.accounting import CACHE_HIT, NO_GENERATION, generation_usage, total_usage
from rag.cache import CachedAnswer, SemanticCache
from rag.errors import InvalidRequest
from rag.llm.base import LLM, ChatMessage, Generation
from rag.prompt import NO_ANSWER, build_messages, citations_for, is_abstention, split_answer
from rag.router import CascadeRouter
from rag.settings import Settings
from rag.types import Answer, Passage, Retrieval, Route, TierUsage


class Retriever(Protocol):
    def retrieve(
        self, tenant: str, question: str, top_k: int, token_budget: int, query_vector: np.ndarray | None = None
    ) -> Retrieval: ...


class QueryPipeline:
    def __init__(
        self,
        settings: Settings,
        retriever: Retriever,
        llms: Mapping[str, LLM],
        embed_query: Callable[[str], np.ndarray],
        cache: SemanticCache | None = None,
        router: CascadeRouter | None = None,
    ) -> None:
        missing = set(settings.tiers) - set(llms)
        if missing:
            raise ValueError(f"no LLM for tiers {sorted(missing)}")
        if settings.routing == "cascade" and router is None:
            raise ValueError("routing 'cascade' needs a router")
        self._settings = settings
        self._router = router
        self._retriever = retriever
        self._llms = llms
        self._embed_query = embed_query
        self._cache = cache

    def validate(self, question: str, top_k: int | None, token_budget: int | None) -> tuple[str, int, int]:
        s = self._settings
        question = question.strip()
        if not question:
            raise InvalidRequest("question must not be empty")
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
        self, question: str, tenant: str, top_k: int | None = None, token_budget: int | None = None
    ) -> Answer:
        started = time.perf_counter()
        question, top_k, token_budget = self.validate(question, top_k, token_budget)
        vector = self._embed_query(question)  # once: for the cache and for dense retrieval
        after_embed = time.perf_counter()
        lookup = self._cache.lookup(tenant, question, vector) if self._cache else None
        after_cache = time.perf_counter()
        if lookup is not None and lookup.hit:
            return Answer(
                answer=lookup.answer.answer,
                citations=lookup.answer.citations,
                usage=CACHE_HIT,
                latency_ms=(after_cache - started) * 1000,
                stage_ms={"embed": (after_embed - started) * 1000, "cache": (after_cache - after_embed) * 1000},
                debug={"cache": {"reason": lookup.reason, "cached_question": lookup.cached_question}},
                cache="hit",
                cache_similarity=lookup.similarity,
            )
        retrieval = self._retriever.retrieve(tenant, question, top_k, token_budget, query_vector=vector)
        after_retrieval = time.perf_counter()
        passages = list(retrieval.passages)
        route: Route | None = None
        if not passages:
            # Nothing to ground an answer on: asking the model would only pay for a guess.
            text, citations, usage = NO_ANSWER, [], NO_GENERATION
        else:
            raw, generations, route = self._generate(build_messages(question, passages), passages)
            usage = total_usage(generations)
            text, cited = split_answer(raw, passages)
            citations = citations_for(text, cited, passages, question)
        text = text or NO_ANSWER
        done = time.perf_counter()
        if self._cache is not None:
            abstained = not passages or is_abstention(text)
            self._cache.store(tenant, question, vector, CachedAnswer(text, tuple(citations)), abstained)
        stage_ms = {
            "embed": (after_embed - started) * 1000,
            "cache": (after_cache - after_embed) * 1000,
            "retrieve": (after_retrieval - after_cache) * 1000,
            "generate": (done - after_retrieval) * 1000,
        }
        stage_ms.update({f"retrieve.{k}": v for k, v in retrieval.stage_ms.items()})
        debug: dict[str, object] = {"retrieval": retrieval.debug}
        if lookup is not None:
            debug["cache"] = {"reason": lookup.reason}
        return Answer(
            answer=text,
            citations=tuple(citations),
            usage=usage,
            latency_ms=(done - started) * 1000,
            stage_ms=stage_ms,
            debug=debug,
            cache="miss",
            cache_similarity=lookup.similarity if lookup is not None else None,
            route=route,
        )

    def _call(self, tier: str, messages: list[ChatMessage]) -> tuple[Generation, TierUsage]:
        generation = self._llms[tier].generate(messages, self._settings.max_answer_tokens)
        return generation, generation_usage(tier, self._settings.tiers[tier], messages, generation.text)

    def _generate(
        self, messages: list[ChatMessage], passages: list[Passage]
    ) -> tuple[str, list[TierUsage], Route]:
        """One call when routing is fixed; in a cascade the cheap tier first, the strong one only if the
        cheap answer fails the router's check. Both calls are paid for, so both are counted."""
        s = self._settings
        if s.routing == "fixed" or self._router is None:
            generation, usage = self._call(s.default_tier, messages)
            return generation.text, [usage], Route(s.default_tier, "routing is fixed")
        cheap, cheap_usage = self._call(s.cheap_tier, messages)
        verdict = self._router.check(split_answer(cheap.text, passages)[0], passages, cheap.confidence)
        if verdict.accept:
            return cheap.text, [cheap_usage], Route(s.cheap_tier, verdict.reason)
        strong, strong_usage = self._call(s.default_tier, messages)
        return strong.text, [cheap_usage, strong_usage], Route(s.default_tier, verdict.reason, escalated=True)
