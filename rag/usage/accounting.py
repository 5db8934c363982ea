"""The one place that counts and prices tokens; every usage block comes from here."""

from __future__ import annotations

from collections.abc import Sequence

from rag.generation.llm.base import ChatMessage
from rag.settings import TierSettings
from rag.tokens import count_tokens
from rag.types import TierUsage, Usage

# OpenAI's chat format adds a few tokens per message and for the reply's priming.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


def count_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    return sum(count_tokens(m.content) + TOKENS_PER_MESSAGE for m in messages) + TOKENS_PER_REPLY


def cost_usd(tier: TierSettings, prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * tier.input_usd_per_mtok + completion_tokens * tier.output_usd_per_mtok) / 1_000_000


def generation_usage(
    tier_name: str, tier: TierSettings, messages: Sequence[ChatMessage], completion: str
) -> TierUsage:
    prompt_tokens = count_prompt_tokens(messages)
    completion_tokens = count_tokens(completion)
    return TierUsage(
        tier=tier_name,
        model=tier.model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=cost_usd(tier, prompt_tokens, completion_tokens),
    )


def total_usage(generations: Sequence[TierUsage]) -> Usage:
    """The usage block of an answer: the sum of its generation calls, named after the last (the one
    whose answer was returned)."""
    if not generations:
        return NO_GENERATION
    last = generations[-1]
    return Usage(
        prompt_tokens=sum(g.prompt_tokens for g in generations),
        completion_tokens=sum(g.completion_tokens for g in generations),
        model=last.model,
        tier=last.tier,
        cost_usd=sum(g.cost_usd for g in generations),
        generations=tuple(generations),
    )


NO_GENERATION = Usage(prompt_tokens=0, completion_tokens=0, model="none", tier="none", cost_usd=0.0)

CACHE_HIT = Usage(prompt_tokens=0, completion_tokens=0, model="cache", tier="cache", cost_usd=0.0)
