"""Follow-ups made standalone (``rag/conversation``): the rules, the history's bound and the reuse of its
summaries, and which rewrite stands. The model is scripted here (these are routing decisions over its
replies); the real cheap tier is driven over HTTP in tests/test_chat.py and measured by `rag eval rewrite`."""

from __future__ import annotations

import pytest

from rag.conversation.history import HistoryParams, HistoryWindow
from rag.conversation.rewriter import FollowUpRewriter
from rag.conversation.rules import conversation_subject, resolution_needed, substitute
from rag.settings import Settings
from rag.tokens import count_tokens
from rag.types import Turn
from retrieval.tokenize import tokenize
from tests.conftest import ScriptedLLM

TIER = Settings().tiers["cheap"]


def rewriter(llm: ScriptedLLM) -> FollowUpRewriter:
    return FollowUpRewriter(llm, "cheap", TIER, HistoryWindow(llm, "cheap", TIER, HistoryParams()), tokenize)


@pytest.mark.parametrize(
    ("question", "needed"),
    [
        ("When did they disband?", True),  # points back
        ("What was his style?", True),
        ("What about Spain?", True),  # carries on from the last turn
        ("What happened in 1983?", True),  # names nothing: a year is not what it asks about
        ("Why?", True),
        ("他什么时候出生？", True),
        ("When did Frank Zappa form the Mothers of Invention?", False),  # stands alone
        ("Did Tittle play in the NFL?", False),
        ("What did NASA build?", False),
        ("长江有多长？", False),
    ],
)
def test_the_rules_send_only_follow_ups_to_the_model(question: str, needed: bool) -> None:
    assert (resolution_needed(question, has_history=True) is not None) == needed
    assert resolution_needed(question, has_history=False) is None  # no conversation: nothing to resolve


def test_substitution_and_the_conversations_subject() -> None:
    assert substitute("When did he switch to baseball?", "Reggie Jackson") == "When did Reggie Jackson switch to baseball?"
    assert substitute("How did his films do?", "Terry Gilliam") == "How did Terry Gilliam's films do?"
    assert substitute("Did anyone meet her?", "Ann Smith") == "Did anyone meet Ann Smith?"
    assert substitute("What awards did her book win?", "Ann Smith") == "What awards did Ann Smith's book win?"
    assert substitute("What happened in 1985?", "Vanilla Ice") == "What happened in 1985 (Vanilla Ice)?"
    assert conversation_subject([], "Joe Perry (musician): Early life") == "Joe Perry"
    # Named in the question beats named in an answer; a sentence's capitalized first word is not a name.
    turns = [("Who were ABBA?", "A Swedish pop group formed in Stockholm in 1972.")]
    assert conversation_subject(turns, None) == "ABBA"
    assert conversation_subject([("Tell me about The Beatles.", "They came from Liverpool.")], None) == "The Beatles"
    assert conversation_subject([("Why?", "Because.")], None) is None


def test_a_question_that_stands_alone_costs_nothing() -> None:
    llm = ScriptedLLM(TIER.model, "unused")
    rewrite = rewriter(llm).rewrite("When did ABBA disband?", [Turn("Who were ABBA?", "A Swedish pop group.")])
    assert rewrite.question == rewrite.asked and rewrite.reason is None and rewrite.generations == ()
    assert llm.prompts == []


def test_a_good_model_rewrite_stands_and_is_counted() -> None:
    llm = ScriptedLLM(TIER.model, "When did ABBA disband?")
    history = [Turn("Who were ABBA?", "A Swedish pop group formed in Stockholm in 1972.")]
    rewrite = rewriter(llm).rewrite("When did they disband?", history)
    assert rewrite.question == "When did ABBA disband?" and "they" in (rewrite.reason or "")
    (call,) = rewrite.generations
    assert call.tier == "cheap" and call.prompt_tokens > count_tokens("When did they disband?")
    assert call.completion_tokens == count_tokens("When did ABBA disband?") and call.cost_usd > 0
    assert "Who were ABBA?" in llm.prompts[0][-1].content  # the conversation was shown


@pytest.mark.parametrize(
    "reply",
    [
        "When did they disband?",  # returned as asked
        "Who were ABBA?",  # an earlier question copied back
        "",  # nothing
    ],
)
def test_an_unusable_model_rewrite_falls_back_to_the_subject(reply: str) -> None:
    history = [Turn("Who were ABBA?", "A Swedish pop group formed in Stockholm in 1972.")]
    rewrite = rewriter(ScriptedLLM(TIER.model, reply)).rewrite("When did they disband?", history)
    assert rewrite.question == "When did ABBA disband?"
    assert "resolved to ABBA" in (rewrite.reason or "") and len(rewrite.generations) == 1  # the call still cost


def long_conversation(n: int) -> list[Turn]:
    return [Turn(f"What happened to the Mothers of Invention in year {1960 + i}?", "They toured. " * 60) for i in range(n)]


def test_the_history_stays_under_its_bound_and_summaries_are_reused() -> None:
    params = HistoryParams(max_tokens=300, summary_tokens=60, answer_tokens=40)
    llm = ScriptedLLM(TIER.model, "Frank Zappa's band, the Mothers of Invention, toured every year from 1960. " * 10)
    window = HistoryWindow(llm, "cheap", TIER, params)

    short = long_conversation(2)
    spent: list = []
    assert "Earlier:" not in window.render(short, spent) and spent == []  # fits: shown as it was, no call

    for n in (8, 20, 60):
        spent = []
        shown = window.render(long_conversation(n), spent)
        assert count_tokens(shown) <= params.max_tokens, n
        assert shown.startswith("Earlier: ") and "year 1960?" not in shown  # the oldest turn is summarized
        assert f"year {1960 + n - 1}" in shown  # the latest turn is always shown as it was
        assert all(call.tier == "cheap" and call.prompt_tokens > 0 for call in spent)

    # The same history again: its summary is reused, no call. One turn more: one call, which reads the
    # summary so far and only the turn that just aged out.
    spent = []
    window.render(long_conversation(60), spent)
    assert spent == []
    calls = len(llm.prompts)
    window.render(long_conversation(61), spent)
    assert len(llm.prompts) == calls + 1 and len(spent) == 1
    last_prompt = llm.prompts[-1][-1].content
    assert last_prompt.startswith("Summary so far: ") and last_prompt.count("Q: ") == 1


def test_the_history_params_are_validated() -> None:
    for bad in ({"max_tokens": 100, "summary_tokens": 100}, {"summary_tokens": 0}, {"answer_tokens": 0}):
        with pytest.raises(ValueError):
            HistoryParams(**bad)
