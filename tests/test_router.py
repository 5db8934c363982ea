"""The cascade router's check on fixed inputs, and the pipeline's cascade with scripted LLMs (a fake LLM
is fine here: what is under test is the routing and its accounting, not generation)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag.generation.llm.base import Generation
from rag.generation.router import CascadeRouter, RoutingParams, load_routing
from rag.pipeline import QueryPipeline
from rag.settings import Settings
from rag.types import Chunk, Passage, Retrieval
from retrieval.tokenize import tokenize
from tests.conftest import ScriptedLLM

CONTEXT = (
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
    "a region in France. They were descended from Norse raiders led by Rollo."
)


def passages(text: str = CONTEXT) -> list[Passage]:
    chunk = Chunk("c1", "d1", "default", 0, text, 0, len(text), "Normans", 30)
    return [Passage(chunk, 1.0)]


@pytest.fixture()
def router() -> CascadeRouter:
    return CascadeRouter(RoutingParams(min_support=1.0, max_answer_words=8), tokenize)


def test_an_answer_made_of_context_words_stands(router: CascadeRouter) -> None:
    verdict = router.check("Rollo", passages())
    assert verdict.accept and verdict.support == 1.0
    assert router.check("in France", passages()).accept  # stopwords and stemming do not matter


def test_an_answer_the_context_does_not_hold_escalates(router: CascadeRouter) -> None:
    verdict = router.check("William the Conqueror", passages())
    assert not verdict.accept and verdict.support is not None and verdict.support < 1.0
    assert "context" in verdict.reason


def test_abstentions_and_rambling_escalate_yes_no_stands(router: CascadeRouter) -> None:
    assert not router.check("I don't know.", passages()).accept
    assert not router.check("", passages()).accept
    long_answer = "The Normans were people descended from Norse raiders in France"
    assert not router.check(long_answer, passages()).accept
    assert router.check("Yes", passages()).accept
    strict = CascadeRouter(RoutingParams(accept_yes_no=False, escalate_abstention=False), tokenize)
    assert not strict.check("no.", passages()).accept
    assert strict.check("I don't know", passages()).accept


def test_partial_support_is_judged_against_the_threshold() -> None:
    lenient = CascadeRouter(RoutingParams(min_support=0.5), tokenize)
    assert lenient.check("Rollo the Great", passages()).accept  # rollo yes, great no: 1/2
    assert not CascadeRouter(RoutingParams(min_support=0.8), tokenize).check("Rollo the Great", passages()).accept


def test_a_short_answer_in_a_linked_context_has_its_own_confidence_bar() -> None:
    params = RoutingParams(min_confidence=0.8, linked_max_words=2, min_confidence_linked=0.2)
    router = CascadeRouter(params, tokenize)
    assert not router.check("Rollo", passages(), confidence=0.5).accept  # not linked: the usual bar
    assert router.check("Rollo", passages(), confidence=0.5, linked=True).accept
    assert not router.check("Rollo", passages(), confidence=0.1, linked=True).accept  # below the linked bar
    # Longer answers, and every other check, are judged as before.
    assert router.check("in France", passages(), confidence=0.5, linked=True).accept  # two words
    assert not router.check("led by Rollo", passages(), confidence=0.5, linked=True).accept
    assert not router.check("William", passages(), confidence=0.5, linked=True).accept  # not in the context
    off = CascadeRouter(RoutingParams(min_confidence=0.8), tokenize)
    assert not off.check("Rollo", passages(), confidence=0.5, linked=True).accept
    # A number keeps the usual bar: several passages hold look-alike years and counts.
    assert router.check("10th", passages(), confidence=0.5, linked=True).accept  # a word, not a number
    for number in ("911", "1,066", "1066."):
        assert not router.check(number, passages("Rollo died in 911, before 1,066 and 1066."), 0.5, linked=True).accept


def test_the_bar_for_many_passages_can_be_kept_for_linked_contexts() -> None:
    many = passages() * 4
    params = RoutingParams(min_confidence=0.8, many_passages=4, min_confidence_many=0.4)
    everywhere = CascadeRouter(params, tokenize)
    assert everywhere.check("Rollo", many, confidence=0.5).accept
    assert not everywhere.check("Rollo", passages(), confidence=0.5).accept  # one passage: the usual bar
    linked_only = CascadeRouter(replace(params, many_passages_linked_only=True), tokenize)
    assert not linked_only.check("Rollo", many, confidence=0.5).accept  # several chunks, no link: the usual bar
    assert linked_only.check("Rollo", many, confidence=0.5, linked=True).accept
    assert not linked_only.check("Rollo", many, confidence=0.3, linked=True).accept  # below the lower bar
    assert not linked_only.check("Rollo", passages(), confidence=0.5, linked=True).accept  # too few passages


def test_parameters_are_validated_and_the_shipped_file_loads() -> None:
    with pytest.raises(ValueError):
        RoutingParams(min_support=1.5)
    with pytest.raises(ValueError):
        RoutingParams(max_answer_words=0)
    with pytest.raises(ValueError):
        RoutingParams(linked_max_words=-1)
    with pytest.raises(ValueError):
        RoutingParams(min_confidence_linked=1.5)
    assert isinstance(load_routing(), RoutingParams)


class FixedRetriever:
    def retrieve(self, tenant, question, top_k, token_budget, query_vector=None) -> Retrieval:
        return Retrieval(tuple(passages()))


def run(tmp_path: Path, cheap_reply: str, routing: str = "cascade") -> tuple[object, ScriptedLLM, ScriptedLLM]:
    settings = Settings(data_dir=tmp_path, routing=routing, cache_enabled=False)
    cheap = ScriptedLLM(settings.tiers["cheap"].model, cheap_reply)
    strong = ScriptedLLM(settings.tiers["strong"].model, "Rollo")
    pipeline = QueryPipeline(
        settings,
        FixedRetriever(),
        {"cheap": cheap, "strong": strong},
        lambda q: np.zeros(4, dtype=np.float32),
        router=CascadeRouter(load_routing(), tokenize),
    )
    return pipeline.answer("Who led the Norse raiders?", "default"), cheap, strong


def test_the_cascade_stops_at_the_cheap_tier_when_its_answer_holds(tmp_path: Path) -> None:
    answer, cheap, strong = run(tmp_path, "Rollo")
    assert (cheap.calls, strong.calls) == (1, 0)
    assert answer.route.tier == "cheap" and not answer.route.escalated
    assert [g.tier for g in answer.usage.generations] == ["cheap"]
    assert answer.usage.cost_usd == answer.usage.generations[0].cost_usd


class UnsureLLM(ScriptedLLM):
    """Replies like ``ScriptedLLM``, reporting a token probability of 0.5 (the router's confidence)."""

    def stream(self, messages, max_tokens):  # type: ignore[no-untyped-def]
        generation = yield from super().stream(messages, max_tokens)
        return Generation(generation.text, generation.finish_reason, token_probs=(0.9, 0.5))


@pytest.mark.parametrize("linked", [True, False])
def test_the_pipeline_tells_the_router_whether_linking_chose_the_context(tmp_path: Path, linked: bool) -> None:
    class LinkedRetriever:
        def retrieve(self, tenant, question, top_k, token_budget, query_vector=None) -> Retrieval:
            return Retrieval(tuple(passages()), linked=linked)

    settings = Settings(data_dir=tmp_path, routing="cascade", cache_enabled=False)
    cheap = UnsureLLM(settings.tiers["cheap"].model, "Rollo")
    strong = ScriptedLLM(settings.tiers["strong"].model, "Rollo")
    params = RoutingParams(min_confidence=0.8, linked_max_words=1, min_confidence_linked=0.2)
    pipeline = QueryPipeline(
        settings,
        LinkedRetriever(),
        {"cheap": cheap, "strong": strong},
        lambda q: np.zeros(4, dtype=np.float32),
        router=CascadeRouter(params, tokenize),
    )
    answer = pipeline.answer("Who led the Norse raiders?", "default")
    assert answer.route.escalated is not linked
    assert strong.calls == (0 if linked else 1)


def test_an_escalation_pays_for_both_calls_and_says_why(tmp_path: Path) -> None:
    answer, cheap, strong = run(tmp_path, "I don't know.")
    assert (cheap.calls, strong.calls) == (1, 1)
    assert answer.answer == "Rollo" and answer.route.tier == "strong" and answer.route.escalated
    assert "abstained" in answer.route.reason
    first, second = answer.usage.generations
    assert (first.tier, second.tier) == ("cheap", "strong")
    assert answer.usage.prompt_tokens == first.prompt_tokens + second.prompt_tokens
    assert answer.usage.cost_usd == pytest.approx(first.cost_usd + second.cost_usd)
    # the same prompt priced per tier: the strong call costs more than the cheap one
    assert first.prompt_tokens == second.prompt_tokens and second.cost_usd > first.cost_usd
    assert answer.usage.tier == "strong"


def test_fixed_routing_sends_every_question_to_the_strong_tier(tmp_path: Path) -> None:
    answer, cheap, strong = run(tmp_path, "Rollo", routing="fixed")
    assert (cheap.calls, strong.calls) == (0, 1)
    assert answer.route.tier == "strong" and answer.route.reason == "routing is fixed"


def test_a_cascade_without_a_router_is_rejected_at_construction(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, cache_enabled=False)
    llms = {"cheap": ScriptedLLM("a", "x"), "strong": ScriptedLLM("b", "y")}
    with pytest.raises(ValueError, match="router"):
        QueryPipeline(settings, FixedRetriever(), llms, lambda q: np.zeros(4))


def test_an_answer_that_restates_the_question_escalates_an_option_stands() -> None:
    router = CascadeRouter(RoutingParams(min_support=0.5, max_answer_words=30, max_echo=0.8), tokenize)
    question = "Who were the Norse raiders in France led by?"
    verdict = router.check("The Norse raiders in France were led", passages(), question=question)
    assert not verdict.accept and "restate" in verdict.reason
    assert router.check("Rollo", passages(), question=question).accept
    # one of the options a question names is all question words, and stands
    assert router.check("Rollo", passages(), question="Who led the raiders, Rollo or William?").accept
    assert CascadeRouter(RoutingParams(max_answer_words=30), tokenize).check(
        "The Norse raiders in France were led", passages(), question=question
    ).accept  # max_echo 1.0: the check is off
    with pytest.raises(ValueError):
        RoutingParams(max_echo=1.5)


# -- grounding: the service says the documents do not say, instead of answering from memory ------------


def test_an_answer_no_sentence_holds_is_withheld_when_the_check_is_on() -> None:
    off = CascadeRouter(RoutingParams(), tokenize)
    assert off.grounded("Who led the raiders?", "Melbourne", passages()).accept  # off by default
    on = CascadeRouter(RoutingParams(abstain_ungrounded=True), tokenize)
    verdict = on.grounded("What is the capital of Australia?", "Melbourne", passages())
    assert not verdict.accept and "no sentence" in verdict.reason
    assert on.grounded("Who led the raiders?", "Rollo", passages()).accept
    assert on.grounded("Who led the raiders?", "rollo.", passages()).accept  # case and punctuation aside
    assert on.grounded("Were they Norse?", "Yes", passages()).accept  # yes/no is exempt
    assert on.grounded("Who?", "I don't know.", passages()).accept  # already an abstention


@pytest.fixture(scope="module")
def cross_encoder():
    from retrieval.rerank import OnnxCrossEncoder

    encoder = OnnxCrossEncoder(threads=1)
    encoder.warm_up()
    return encoder


def test_the_score_bar_withholds_an_answer_lifted_from_an_unrelated_sentence(cross_encoder) -> None:
    text = CONTEXT + " The annual rainfall of the region is about 800 millimetres."
    bar = CascadeRouter(RoutingParams(abstain_min_score=0.0), tokenize, cross_encoder)
    assert bar.grounded("Who led the Norse raiders?", "Rollo", passages(text)).accept
    verdict = bar.grounded("Who was the first king of Sweden?", "800 millimetres", passages(text))
    assert not verdict.accept and "scores" in verdict.reason
    with pytest.raises(ValueError, match="cross-encoder"):
        CascadeRouter(RoutingParams(abstain_min_score=0.0), tokenize)


def test_the_pipeline_withholds_an_ungrounded_answer_and_never_streams_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, routing="fixed", cache_enabled=False)
    strong = ScriptedLLM(settings.tiers["strong"].model, "Canberra")
    pipeline = QueryPipeline(
        settings,
        FixedRetriever(),
        {"cheap": ScriptedLLM(settings.tiers["cheap"].model, "x"), "strong": strong},
        lambda q: np.zeros(4, dtype=np.float32),
        router=CascadeRouter(RoutingParams(abstain_ungrounded=True), tokenize),
    )
    events = list(pipeline.answer_stream("What is the capital of Australia?", "default"))
    pieces, answer = events[:-1], events[-1]
    assert pieces == ["I don't know."] and answer.answer == "I don't know."
    assert answer.citations == () and "withheld" in answer.route.reason
    assert [g.tier for g in answer.usage.generations] == ["strong"]  # the call was made and is paid for
