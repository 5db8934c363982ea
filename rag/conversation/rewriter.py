"""A follow-up question made standalone: cheap rules decide, the cheap tier rewrites, code checks.

The small model often answers with the follow-up unchanged, or with an earlier question of the
conversation copied back. So its rewrite stands only when it keeps the follow-up's own words and adds
some; otherwise the follow-up's first pronoun is replaced by the conversation's subject (its topic, or
the name its turns mention most), which needs no model at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.conversation.history import HistoryWindow
from rag.conversation.rules import conversation_subject, resolution_needed, substitute
from rag.generation.llm.base import LLM, ChatMessage
from rag.settings import TierSettings
from rag.types import TierUsage, Turn
from rag.usage.accounting import generation_usage

REWRITE_SYSTEM = (
    "You rewrite a follow-up question from a conversation so that it can be understood alone. Replace each "
    "pronoun or vague reference with the full name it refers to, and add the name of what the conversation "
    "is about when the question leaves it out. Change nothing else. Reply with the rewritten question only."
)
# Worked examples (written for this prompt, not taken from any evaluation set).
EXAMPLES = (
    ("Topic: Marie Curie\nQ: Where was she born?\nA: In Warsaw, in 1867.", "What did she study there?",
     "What did Marie Curie study in Warsaw?"),
    ("Q: Who founded the band Queen?\nA: Freddie Mercury, Brian May and Roger Taylor.",
     "When did they release their first album?", "When did Queen release their first album?"),
    ("Topic: Apollo 11\nQ: Who flew on it?\nA: Neil Armstrong, Buzz Aldrin and Michael Collins.",
     "What happened after the landing?", "What happened after the Apollo 11 moon landing?"),
)
_LABEL = re.compile(r"^\s*(standalone|rewritten)?\s*question\s*:\s*", re.IGNORECASE)
KEEP_SHARE = 0.6  # of the follow-up's content words, the share a model rewrite must keep


@dataclass(frozen=True)
class Rewrite:
    """``question`` is what retrieval and the answer cache get; ``reason`` why it differs from ``asked``
    (None: searched as asked); ``generations`` the model calls it took (summary and rewrite)."""

    question: str
    asked: str
    reason: str | None
    generations: tuple[TierUsage, ...] = ()


class FollowUpRewriter:
    """``tokenize``: the content words of a text (retrieval's tokenizer), to check a model rewrite."""

    def __init__(
        self,
        llm: LLM,
        tier_name: str,
        tier: TierSettings,
        window: HistoryWindow,
        tokenize: Callable[[str], list[str]],
        max_tokens: int = 64,
    ) -> None:
        self._llm = llm
        self._tokenize = tokenize
        self._tier_name = tier_name
        self._tier = tier
        self.window = window
        self._max_tokens = max_tokens

    def rewrite(self, question: str, history: Sequence[Turn], topic: str | None = None) -> Rewrite:
        """``topic``: what the conversation is about when it is known apart from its turns (a title)."""
        reason = resolution_needed(question, bool(history) or bool(topic))
        if reason is None:
            return Rewrite(question, question, None)
        spent: list[TierUsage] = []
        context = self.window.render(history, spent)
        opening = f"Topic: {topic}\n" if topic else ""
        messages = [ChatMessage("system", REWRITE_SYSTEM)]
        for shown, follow_up, rewritten in EXAMPLES:
            messages += [ChatMessage("user", f"{shown}\nFollow-up question: {follow_up}"), ChatMessage("assistant", rewritten)]
        messages.append(ChatMessage("user", f"{opening}{context}\nFollow-up question: {question}"))
        generation = self._llm.generate(messages, self._max_tokens)
        spent.append(generation_usage(self._tier_name, self._tier, messages, generation.text))
        rewritten = _clean(generation.text)
        if self._resolves(question, rewritten):
            return Rewrite(rewritten, question, reason, tuple(spent))
        subject = conversation_subject([(t.question, t.answer) for t in history], topic)
        if subject is None:
            return Rewrite(question, question, f"{reason}; nothing to resolve it with", tuple(spent))
        return Rewrite(substitute(question, subject), question, f"{reason}; resolved to {subject}", tuple(spent))

    def _resolves(self, question: str, rewritten: str) -> bool:
        """A usable model rewrite keeps most of the follow-up's words (not an earlier question copied
        back) and adds at least one (not the follow-up returned as it was)."""
        asked, new = set(self._tokenize(question)), set(self._tokenize(rewritten))
        kept = len(asked & new) >= KEEP_SHARE * len(asked)
        return bool(new - asked) and kept and len(new) <= 3 * len(asked) + 12


def _clean(text: str) -> str:
    """The first line of the model's reply, without a label or quotes it may have added."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    return _LABEL.sub("", line).strip().strip("\"'“”").strip()
