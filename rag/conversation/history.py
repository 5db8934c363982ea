"""The conversation as a prompt sees it: bounded in tokens however long the conversation grows.

The recent turns are shown as they were (each answer cut to ``answer_tokens``); turns that no longer fit
are folded into a summary written by the cheap tier. A summary is keyed by the turns it covers and kept,
so the next turn extends it by the turns that have just aged out instead of summarizing from the start:
each summary call reads a bounded amount, and a conversation pays for each turn's summary once.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from rag.generation.llm.base import LLM, ChatMessage
from rag.settings import TierSettings
from rag.tokens import count_tokens, token_prefix
from rag.types import TierUsage, Turn
from rag.usage.accounting import generation_usage

SUMMARY_SYSTEM = (
    "Summarize this conversation in a few short sentences: who and what it is about, with full names, "
    "places and dates, and what was said of them. Reply with the summary only."
)


@dataclass(frozen=True)
class HistoryParams:
    """``max_tokens``: the whole history part of a prompt. ``summary_tokens``: the part a summary of the
    older turns may take. ``answer_tokens``: one earlier answer, shown cut to this."""

    max_tokens: int = 400
    summary_tokens: int = 120
    answer_tokens: int = 80

    def __post_init__(self) -> None:
        if not 0 < self.summary_tokens < self.max_tokens or self.answer_tokens < 1:
            raise ValueError("need 0 < summary_tokens < max_tokens and answer_tokens ≥ 1")


def turn_text(turn: Turn, answer_tokens: int) -> str:
    return f"Q: {turn.question.strip()}\nA: {token_prefix(turn.answer.strip(), answer_tokens)}"


def _key(turns: Sequence[Turn]) -> str:
    data = json.dumps([[t.question, t.answer] for t in turns], ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


class HistoryWindow:
    """Renders earlier turns within ``params.max_tokens``; summaries are kept per process (the last
    ``keep`` of them), so a worker that has not seen a conversation before summarizes it once."""

    def __init__(self, llm: LLM, tier_name: str, tier: TierSettings, params: HistoryParams, keep: int = 4096):
        self._llm = llm
        self._tier_name = tier_name
        self._tier = tier
        self.params = params
        self._keep = keep
        self._summaries: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def render(self, turns: Sequence[Turn], spent: list[TierUsage]) -> str:
        """The history part of a prompt, at most ``params.max_tokens`` tokens; summary calls land in ``spent``."""
        p = self.params
        lines = [turn_text(turn, p.answer_tokens) for turn in turns]
        if self._fits(lines, p.max_tokens):
            return "\n".join(lines)
        recent: list[str] = []  # newest last; as many as fit beside a summary
        for line in reversed(lines):
            if not self._fits([line, *recent], p.max_tokens - p.summary_tokens):
                break
            recent.insert(0, line)
        aged = len(turns) - len(recent)
        summary = self._summary(turns[:aged], lines[:aged], spent)
        out = "\n".join([f"Earlier: {summary}", *recent])
        return out if self._fits([out], p.max_tokens) else token_prefix(out, p.max_tokens)

    @staticmethod
    def _fits(lines: Sequence[str], budget: int) -> bool:
        return count_tokens("\n".join(lines)) <= budget

    def _summary(self, turns: Sequence[Turn], lines: Sequence[str], spent: list[TierUsage]) -> str:
        """The summary of ``turns`` (shown as ``lines``): the longest prefix already summarized, extended
        by the turns after it, as many per call as fit in ``max_tokens`` (a conversation growing a turn at
        a time costs one call per turn that ages out; one seen first at 50 turns, a few calls)."""
        done, summary = 0, ""
        for end in range(len(turns), 0, -1):
            known = self._get(_key(turns[:end]))
            if known is not None:
                done, summary = end, known
                break
        while done < len(turns):
            group = [lines[done]]
            done += 1
            while done < len(turns) and self._fits([*group, lines[done]], self.params.max_tokens):
                group.append(lines[done])
                done += 1
            summary = self._extend(summary, group, spent)
            self._put(_key(turns[:done]), summary)
        return summary

    def _extend(self, summary: str, lines: Sequence[str], spent: list[TierUsage]) -> str:
        told = f"Summary so far: {summary}\n" if summary else ""
        messages = [ChatMessage("system", SUMMARY_SYSTEM), ChatMessage("user", told + "\n".join(lines))]
        generation = self._llm.generate(messages, self.params.summary_tokens)
        spent.append(generation_usage(self._tier_name, self._tier, messages, generation.text))
        return token_prefix(" ".join(generation.text.split()), self.params.summary_tokens)

    def _get(self, key: str) -> str | None:
        with self._lock:
            if key in self._summaries:
                self._summaries.move_to_end(key)
                return self._summaries[key]
            return None

    def _put(self, key: str, summary: str) -> None:
        with self._lock:
            self._summaries[key] = summary
            while len(self._summaries) > self._keep:
                self._summaries.popitem(last=False)
