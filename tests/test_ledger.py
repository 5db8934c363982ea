"""The usage ledger's sums, the daily budget's switch to the cheap tier and its 429, and the accounting
of an abandoned stream, on the real pipeline with scripted LLMs (generation itself is not under test),
each against both ledger stores (SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from api.routers.usage import prometheus_text
from rag.errors import BudgetExceeded, StoreError
from rag.generation.router import CascadeRouter, RoutingParams
from rag.pipeline import QueryPipeline
from rag.service import follow_up_rewriter
from rag.settings import Settings
from rag.tokens import count_tokens
from rag.types import Answer, Chunk, Passage, Retrieval, Turn
from rag.usage.ledger import LedgerStore, UsageLedger
from retrieval.tokenize import tokenize
from tests.conftest import ScriptedLLM
from tests.test_router import CONTEXT

DAY = 86_400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0  # 2023-11-14 22:13 UTC

    def __call__(self) -> float:
        return self.now


class RetrieverWithReference:
    """One passage in the prompt and ten whole chunks as the naive reference."""

    def retrieve(self, tenant, question, top_k, token_budget, query_vector=None) -> Retrieval:
        chunk = Chunk("c1", "d1", tenant, 0, CONTEXT, 0, len(CONTEXT), "Normans", 30)
        reference = tuple(Passage(Chunk(f"c{i}", "d1", tenant, i, CONTEXT * 3, 0, 1, "Normans", 90), 1.0) for i in range(10))
        return Retrieval((Passage(chunk, 1.0),), reference_passages=reference, rerank_tokens=123)


def make(
    store: LedgerStore, tmp_path: Path, cheap_reply: str = "Rollo", **overrides
) -> tuple[QueryPipeline, UsageLedger, Clock, dict]:
    clock = Clock()
    ledger = UsageLedger(store, clock=clock)
    settings = Settings(data_dir=tmp_path, cache_enabled=False, **overrides)
    llms = {"cheap": ScriptedLLM("cheap-model", cheap_reply), "strong": ScriptedLLM("strong-model", "Rollo of Normandy")}
    router = CascadeRouter(RoutingParams(min_support=1.0), tokenize)
    pipeline = QueryPipeline(settings, RetrieverWithReference(), llms, lambda q: np.zeros(4), router=router, ledger=ledger)
    return pipeline, ledger, clock, llms


def test_the_ledger_is_the_sum_of_the_usage_blocks(tmp_path: Path, ledger_store: LedgerStore) -> None:
    pipeline, ledger, _, _ = make(ledger_store, tmp_path, cheap_reply="William")  # unsupported: escalates
    answers = [pipeline.answer(q, tenant) for q, tenant in [("Who led them?", "a"), ("Who?", "a"), ("Who led?", "b")]]
    total = ledger.totals()
    assert total.queries == 3 and total.escalations == 3 and total.cache_hits == 0
    assert total.prompt_tokens == sum(a.usage.prompt_tokens for a in answers)
    assert total.completion_tokens == sum(a.usage.completion_tokens for a in answers)
    assert total.cost_usd == pytest.approx(sum(a.usage.cost_usd for a in answers))
    assert total.rerank_tokens == 3 * 123 and total.embedding_tokens == sum(a.usage.embedding_tokens for a in answers)
    assert total.tiers["cheap"].calls == total.tiers["strong"].calls == 3
    tenants = ledger.tenants()
    assert tenants["a"].queries == 2 and tenants["b"].queries == 1
    assert tenants["a"].cost_usd + tenants["b"].cost_usd == pytest.approx(total.cost_usd)
    # The reference is the strong tier over the ten whole chunks: far more prompt than the one passage sent.
    usage = answers[0].usage
    assert usage.reference_cost_usd > usage.cost_usd and usage.saved_usd == pytest.approx(usage.reference_cost_usd - usage.cost_usd)
    assert usage.saved_by == ("trim",)  # escalated: routing saved nothing on this one
    assert total.saved_usd == pytest.approx(sum(a.usage.saved_usd for a in answers))


def test_a_cheap_answer_is_saved_by_routing_and_trim(tmp_path: Path, ledger_store: LedgerStore) -> None:
    pipeline, ledger, _, llms = make(ledger_store, tmp_path)
    answer = pipeline.answer("Who led the Norse raiders?", "a")
    assert answer.usage.saved_by == ("trim", "routing") and llms["strong"].calls == 0
    assert ledger.totals().saved_by == {"trim": 1, "routing": 1}


def test_near_the_budget_only_the_cheap_tier_answers_and_past_it_queries_are_refused(tmp_path: Path, ledger_store: LedgerStore) -> None:
    limit = 0.003  # about ten escalated answers
    pipeline, ledger, clock, llms = make(ledger_store, tmp_path, cheap_reply="William", budget_usd_per_day=limit)
    first = pipeline.answer("Who led them?", "a")
    assert first.route.escalated  # under 80% of the limit: the cascade escalates as usual
    while ledger.spent_today("a") < 0.8 * limit:
        pipeline.answer("Who led them?", "a")
    strong_calls = llms["strong"].calls
    near = pipeline.answer("Who led them?", "a")
    assert near.route.tier == "cheap" and "budget" in near.route.reason
    assert llms["strong"].calls == strong_calls  # the failing check no longer escalates
    while ledger.spent_today("a") < limit:
        pipeline.answer("Who led them?", "a")
    with pytest.raises(BudgetExceeded) as refused:
        pipeline.answer("Who led them?", "a")
    assert refused.value.status_code == 429 and "00:00:00+00:00" in refused.value.message
    assert refused.value.resets_at.timestamp() > clock.now
    assert pipeline.answer("Who led them?", "b").route.escalated  # another tenant is not affected
    clock.now += DAY  # the next UTC day
    assert pipeline.answer("Who led them?", "a").route.escalated


def test_an_abandoned_stream_still_counts_its_tokens(tmp_path: Path, ledger_store: LedgerStore) -> None:
    pipeline, ledger, _, _ = make(ledger_store, tmp_path, routing="fixed")
    stream = pipeline.answer_stream("Who led the Norse raiders?", "a")
    assert next(stream) == "Rollo "  # the strong tier's first piece, streamed as generated
    stream.close()
    total = ledger.totals()
    assert total.queries == 1 and total.aborted == 1
    # the prompt was read, and only "Rollo " of "Rollo of Normandy" was generated
    assert total.prompt_tokens > 0 and total.completion_tokens == count_tokens("Rollo ")
    assert total.tiers["strong"].calls == 1


def test_a_whole_stream_ends_with_the_answer_and_counts_once(tmp_path: Path, ledger_store: LedgerStore) -> None:
    pipeline, ledger, _, _ = make(ledger_store, tmp_path, routing="fixed")
    events = list(pipeline.answer_stream("Who led the Norse raiders?", "a"))
    pieces, final = events[:-1], events[-1]
    assert isinstance(final, Answer) and "".join(pieces).strip() == final.answer == "Rollo of Normandy"
    assert ledger.totals().queries == 1 and ledger.totals().aborted == 0
    assert ledger.totals().prompt_tokens == final.usage.prompt_tokens


def test_prometheus_text_has_one_sample_per_tenant_and_tier(tmp_path: Path, ledger_store: LedgerStore) -> None:
    pipeline, ledger, _, _ = make(ledger_store, tmp_path, cheap_reply="William")
    pipeline.answer("Who led them?", 'te"nant')
    text = prometheus_text(ledger.tenants())
    assert '# TYPE rag_queries_total counter' in text
    assert 'rag_queries_total{tenant="te\\"nant"} 1' in text
    assert 'rag_generation_calls_total{tenant="te\\"nant",tier="strong"} 1' in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2


def test_the_hourly_series_adds_up_to_the_totals_and_keeps_tenants_apart(
    tmp_path: Path, ledger_store: LedgerStore
) -> None:
    pipeline, ledger, clock, _ = make(ledger_store, tmp_path)
    first = pipeline.answer("Who led them?", "a")
    clock.now += 2 * 3600  # two hours later
    second = pipeline.answer("Who led the Normans?", "a")
    pipeline.answer("Who?", "b")
    series = ledger.hourly("a", 4)
    assert len(series) == 4 and series[-1][0].timestamp() == clock.now // 3600 * 3600  # the current hour last
    assert [totals.queries for _, totals in series] == [0, 1, 0, 1]  # an hour without answers is zeros
    assert series[1][1].cost_usd == pytest.approx(first.usage.cost_usd)
    assert series[3][1].cost_usd == pytest.approx(second.usage.cost_usd)
    assert sum(t.saved_usd for _, t in series) == pytest.approx(ledger.tenant("a").saved_usd)
    assert sum(t.tiers["cheap"].calls for _, t in series if "cheap" in t.tiers) == ledger.tenant("a").tiers["cheap"].calls
    assert [t.queries for _, t in ledger.hourly("a", 1)] == [1]  # only the current hour


class FailingRetriever:
    def retrieve(self, tenant, question, top_k, token_budget, query_vector=None) -> Retrieval:
        raise StoreError("the index is unavailable")


def test_a_follow_ups_rewrite_is_counted_even_when_retrieval_then_fails(
    tmp_path: Path, ledger_store: LedgerStore
) -> None:
    ledger = UsageLedger(ledger_store, clock=Clock())
    settings = Settings(data_dir=tmp_path, cache_enabled=False, routing="fixed")
    llms = {"cheap": ScriptedLLM("cheap-model", "When did ABBA disband?"), "strong": ScriptedLLM("strong-model", "1982")}
    pipeline = QueryPipeline(
        settings, FailingRetriever(), llms, lambda q: np.zeros(4), ledger=ledger, rewriter=follow_up_rewriter(settings, llms)
    )
    with pytest.raises(StoreError):
        pipeline.answer("When did they disband?", "a", history=[Turn("Who were ABBA?", "A Swedish pop group.")])
    totals = ledger.tenant("a")
    assert totals is not None and totals.aborted == 1 and totals.tiers["cheap"].calls == 1 and totals.cost_usd > 0
    assert llms["strong"].calls == 0
