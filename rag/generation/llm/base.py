"""The one interface every generation backend offers, so the pipeline never knows which one answers."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str  # "stop" | "length" (a remote endpoint may report others)
    # The probability the model gave each token it chose (greedy decoding), when the backend exposes
    # it: the cascade router reads the model's own doubt from the least likely one. Not part of
    # equality: the last digits move with llama.cpp's batching (a reused prompt prefix), the text does not.
    token_probs: tuple[float, ...] | None = field(default=None, compare=False)

    @property
    def confidence(self) -> float | None:
        """The lowest chosen-token probability: one unsure token is enough to doubt a short answer."""
        return min(self.token_probs) if self.token_probs else None


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

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> Generator[str, None, Generation]:
        """Yields the answer's text as it is generated and returns the whole ``Generation``. Closing
        the generator early stops generation."""
        ...


def drain(stream: Generator[str, None, Generation]) -> Generation:
    """Runs a stream to its end and returns its ``Generation``."""
    while True:
        try:
            next(stream)
        except StopIteration as stop:
            return stop.value
