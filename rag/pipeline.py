"""The query path: validate → retrieve (within the token budget) → generate → cite → count."""

from __future__ import annotations

import time
from typing import Mapping, Protocol

from rag.accounting import NO_GENERATION, generation_usage
from rag.errors import InvalidRequest
from rag.llm.base import LLM
from rag.prompt import NO_ANSWER, build_messages, citations_for, split_answer
from rag.settings import Settings
from rag.types import Answer, Retrieval


class Retriever(Protocol):
    def retrieve(self, tenant: str, question: str, top_k: int, token_budget: int) -> Retrieval: ...


class QueryPipeline:
    def __init__(self, settings: Settings, retriever: Retriever, llms: Mapping[str, LLM]) -> None:
        missing = set(settings.tiers) - set(llms)
        if missing:
            raise ValueError(f"no LLM for tiers {sorted(missing)}")
        self._settings = settings
        self._retriever = retriever
        self._llms = llms

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
        retrieval = self._retriever.retrieve(tenant, question, top_k, token_budget)
        after_retrieval = time.perf_counter()
        passages = list(retrieval.passages)
        if not passages:
            # Nothing to ground an answer on: asking the model would only pay for a guess.
            text, citations, usage = NO_ANSWER, [], NO_GENERATION
        else:
            tier_name = self._settings.default_tier
            messages = build_messages(question, passages)
            generation = self._llms[tier_name].generate(messages, self._settings.max_answer_tokens)
            usage = generation_usage(tier_name, self._settings.tiers[tier_name], messages, generation.text)
            text, cited = split_answer(generation.text, passages)
            citations = citations_for(text, cited, passages, question)
        done = time.perf_counter()
        stage_ms = {"retrieve": (after_retrieval - started) * 1000, "generate": (done - after_retrieval) * 1000}
        stage_ms.update({f"retrieve.{k}": v for k, v in retrieval.stage_ms.items()})
        return Answer(
            answer=text or NO_ANSWER,
            citations=tuple(citations),
            usage=usage,
            latency_ms=(done - started) * 1000,
            stage_ms=stage_ms,
            debug={"retrieval": retrieval.debug},
        )
