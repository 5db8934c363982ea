"""The one interface every generation backend offers, so the pipeline never knows which one answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str  # "stop" | "length" (a remote endpoint may report others)


class ContextOverflow(ValueError):
    """The prompt plus the answer budget does not fit the model's window.

    Callers trim context to a token budget first, so this signals a bug, not bad input.
    """


class LLM(Protocol):
    model: str

    def warm_up(self) -> None:
        """Do the slow work (assembly, loading) up front, so the first request is not the one that pays."""
        ...

    def generate(self, messages: Sequence[ChatMessage], max_tokens: int) -> Generation: ...
