"""Abstaining before any model is asked when nothing retrieved is relevant: the rule on fixed inputs, and
the pipeline's behaviour around it with scripted LLMs (generation is not under test; the real
cross-encoder's side is in tests/test_api_e2e.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.generation.abstention import AbstentionCheck, asks_about_the_documents
from rag.generation.prompt import NO_ANSWER
from rag.generation.router import CascadeRouter, RoutingParams
from rag.pipeline import QueryPipeline
from rag.settings import Settings
from rag.types import Chunk, Passage, Retrieval
from rag.usage.ledger import UsageLedger
from rag.usage.ledger_store import SqlLedgerStore
from retrieval.tokenize import tokenize
from tests.conftest import ScriptedLLM
from tests.test_router import CONTEXT


@pytest.mark.parametrize(
    ("question", "best", "refused"),
    [
        ("What is the capital of Australia?", -9.5, True),
        ("What is the capital of Australia?", -4.0, False),  # at the bar: answered
        ("What is the capital of Australia?", None, False),  # nothing scored (CJK, no reranker): no decision
        ("Who led the Norse raiders?", 6.2, False),
        ("What is this document about?", -10.0, False),
        ("Summarize the report in three lines", -10.4, False),
        ("What are the key takeaways?", -9.9, False),
        ("what does the passage say about the defense?", -11.0, False),
        ("Who wrote the paper on clades?", -9.0, False),  # names "the paper": the model decides
    ],
)
def test_the_rule(question: str, best: float | None, refused: bool) -> None:
    reason = AbstentionCheck(below=-4.0).reason(question, best)
    assert (reason is not None) == refused
    if refused:
        assert "no passage is relevant" in reason and "-9.50 < -4" in reason


def test_questions_about_the_documents_are_recognised() -> None:
    assert asks_about_the_documents("Give me an overview of these files")
    assert asks_about_the_documents("What are the main points of chapter 2?")
    assert not asks_about_the_documents("When did the Normans reach Italy?")


class ScoredRetriever:
    """One passage, its cross-encoder logit set by the test, ten whole chunks as the reference."""

    def __init__(self, best_relevance: float | None) -> None:
        self.best_relevance = best_relevance

    def retrieve(self, tenant, question, top_k, token_budget, query_vector=None) -> Retrieval:
        chunk = Chunk("c1", "d1", tenant, 0, CONTEXT, 0, len(CONTEXT), "Normans", 30)
        reference = tuple(Passage(Chunk(f"c{i}", "d1", tenant, i, CONTEXT, 0, 1, "Normans", 30), 1.0) for i in range(10))
        return Retrieval((Passage(chunk, 1.0),), reference_passages=reference, best_relevance=self.best_relevance)


def _pipeline(tmp_path: Path, best_relevance: float | None, **overrides) -> tuple[QueryPipeline, dict, UsageLedger]:
    settings = Settings(data_dir=tmp_path, cache_enabled=False, **overrides)
    llms = {"cheap": ScriptedLLM("cheap-model", "Rollo"), "strong": ScriptedLLM("strong-model", "Rollo")}
    ledger = UsageLedger(SqlLedgerStore.embedded(tmp_path / "ledger.sqlite"))
    router = CascadeRouter(RoutingParams(min_support=1.0), tokenize)
    pipeline = QueryPipeline(
        settings, ScoredRetriever(best_relevance), llms, lambda q: np.zeros(4), router=router, ledger=ledger
    )
    return pipeline, llms, ledger


def test_an_irrelevant_context_is_refused_without_a_model_call_and_counted(tmp_path: Path) -> None:
    pipeline, llms, ledger = _pipeline(tmp_path, best_relevance=-9.0)
    answer = pipeline.answer("What is the capital of Australia?", "a")
    assert answer.answer == NO_ANSWER and answer.citations == ()
    assert llms["cheap"].calls == llms["strong"].calls == 0
    assert answer.route is None and answer.usage.cost_usd == 0 and answer.usage.generations == ()
    assert "no passage is relevant" in answer.debug["abstained"]
    # The saving is the reference's prompt, which a naive stack would have paid to guess.
    assert answer.usage.saved_by == ("abstention",) and answer.usage.saved_usd == answer.usage.reference_cost_usd > 0
    totals = ledger.totals()
    assert totals.queries == 1 and totals.cost_usd == 0 and totals.saved_by == {"abstention": 1}


def test_a_relevant_context_or_a_question_about_the_documents_reaches_the_model(tmp_path: Path) -> None:
    pipeline, llms, _ = _pipeline(tmp_path, best_relevance=5.0)
    assert pipeline.answer("Who led the Norse raiders?", "a").answer == "Rollo" and llms["cheap"].calls == 1
    pipeline, llms, _ = _pipeline(tmp_path / "b", best_relevance=-9.0)
    answer = pipeline.answer("What is this document about?", "a")
    assert llms["cheap"].calls == 1 and "abstained" not in answer.debug


def test_the_check_can_be_turned_off_or_moved(tmp_path: Path) -> None:
    pipeline, llms, _ = _pipeline(tmp_path, best_relevance=-9.0, abstain_unsupported=False)
    pipeline.answer("What is the capital of Australia?", "a")
    assert llms["cheap"].calls == 1
    pipeline, llms, _ = _pipeline(tmp_path / "b", best_relevance=-9.0, abstain_below_relevance=-10.0)
    pipeline.answer("What is the capital of Australia?", "a")
    assert llms["cheap"].calls == 1


ZH_PASSAGE = "锣鼓经是大陆传统器乐及戏曲里面常用的打击乐记谱方法，以中文字模拟各种打击乐器的声音。"


def zh_passages() -> list[Passage]:
    return [Passage(Chunk("z1", "d1", "default", 0, ZH_PASSAGE, 0, len(ZH_PASSAGE), "锣鼓经", 40), 1.0)]


@pytest.mark.parametrize(
    ("question", "refused"),
    [
        ("澳大利亚的首都是哪座城市？", True),  # none of its words in the passage
        ("锣鼓经是什么？", False),  # the passage holds its words
        ("锣鼓经用什么模拟打击乐器的声音？", False),
        ("这篇文章讲了什么？", False),  # about the documents: the model decides
        ("请总结一下", False),
        ("What is the capital of Australia?", False),  # Latin script: only the cross-encoder decides
    ],
)
def test_a_chinese_question_is_judged_by_the_words_the_passages_hold(question: str, refused: bool) -> None:
    check = AbstentionCheck(below=-4.0, below_coverage=0.4, analyze=tokenize)
    reason = check.reason(question, None, zh_passages())
    assert (reason is not None) == refused
    if refused:
        assert "no passage holds the question's words" in reason
    # A logit, when there is one, decides; without passages or with the bar at 0 nothing is refused.
    assert check.reason("澳大利亚的首都是哪座城市？", 5.0, zh_passages()) is None
    assert check.reason("澳大利亚的首都是哪座城市？", None, []) is None
    assert AbstentionCheck(below=-4.0, analyze=tokenize).reason("澳大利亚的首都是哪座城市？", None, zh_passages()) is None


def test_the_coverage_bar_needs_an_analyzer() -> None:
    with pytest.raises(ValueError):
        AbstentionCheck(below=-4.0, below_coverage=0.4)


def test_the_pipeline_refuses_a_chinese_question_its_passages_do_not_cover(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, cache_enabled=False)
    llms = {"cheap": ScriptedLLM("cheap-model", "堪培拉"), "strong": ScriptedLLM("strong-model", "堪培拉")}
    router = CascadeRouter(RoutingParams(min_support=1.0), tokenize)
    retriever = ScoredRetriever(best_relevance=None)  # an English passage about the Normans, no logit
    pipeline = QueryPipeline(settings, retriever, llms, lambda q: np.zeros(4), router=router, analyze=tokenize)
    answer = pipeline.answer("澳大利亚的首都是哪座城市？", "a")
    assert answer.answer == NO_ANSWER and llms["cheap"].calls == 0 and answer.usage.cost_usd == 0
    assert "no passage holds the question's words" in answer.debug["abstained"]
    # Without the analyzer (or with the bar at 0) the model is asked, as before.
    unchecked = QueryPipeline(settings, retriever, llms, lambda q: np.zeros(4), router=router)
    assert unchecked.answer("澳大利亚的首都是哪座城市？", "a").answer == "堪培拉" and llms["cheap"].calls == 1
