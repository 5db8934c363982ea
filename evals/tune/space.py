"""The configurations ``rag tune`` sweeps: each one a set of settings overrides, like a profile.

A configuration is two choices: the context (how passages are found and trimmed: retrieval mode, rerank,
graph, depth, trim floor and budget) and the answer policy (which tier answers, and in a cascade, which
check lets a cheap answer stand). The grid is a product of the knobs that move cost or quality most,
with the ablations (no rerank, no graph) at one depth and floor only: each distinct context is one more
prompt per question for both tiers, which is where the sweep spends its time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# How a naive stack retrieves, the baselines of `rag tune` and `rag eval qa`: the dense list alone, whole
# chunks, no rerank, and none of the service's abstention (it answers whatever it retrieved).
NAIVE_RETRIEVAL: Mapping[str, object] = {
    "retrieval_mode": "dense", "rerank": False, "trim": False, "abstain_unsupported": False,
}


@dataclass(frozen=True)
class Context:
    """How a question's passages are found and cut (settings: retrieval_mode, rerank, kg_enabled, top_k,
    trim, trim_floor, token_budget, link_passages)."""

    top_k: int
    floor: float | None = None  # None: whole chunks (no trim)
    rerank: bool = True
    graph: bool = True
    budget: int = 1500
    dense_only: bool = False
    link: bool = True

    @property
    def name(self) -> str:
        if self.dense_only:
            return f"dense k{self.top_k}"
        parts = [f"k{self.top_k}", f"floor {self.floor}" if self.floor is not None else "whole"]
        if self.budget != 1500:
            parts.append(f"budget {self.budget}")
        if not self.rerank:
            parts.append("no rerank")
        if not self.graph:
            parts.append("no graph")
        if not self.link and self.floor is not None:
            parts.append("no link")
        return " ".join(parts)

    def overrides(self) -> dict[str, object]:
        if self.dense_only:
            return {**NAIVE_RETRIEVAL, "kg_enabled": False, "top_k": self.top_k}
        out: dict[str, object] = {
            "retrieval_mode": "hybrid",
            "rerank": self.rerank,
            "kg_enabled": self.graph,
            "top_k": self.top_k,
            "trim": self.floor is not None,
            "token_budget": self.budget,
            "link_passages": self.link,
        }
        if self.floor is not None:
            out["trim_floor"] = self.floor
        return out


@dataclass(frozen=True)
class Policy:
    """Who answers: one tier for every question, or the cascade with a check (settings: routing,
    default_tier, router overrides)."""

    name: str
    overrides: Mapping[str, object] = field(default_factory=dict)


STRONG = Policy("strong", {"routing": "fixed", "default_tier": "strong"})
CHEAP = Policy("cheap", {"routing": "fixed", "default_tier": "cheap"})
CASCADE = Policy("cascade", {"routing": "cascade", "default_tier": "strong", "cheap_tier": "cheap"})
# The cascade with a stricter check: a cheap answer stands only when the cheap model was sure of every
# token it chose, however many passages the context holds and whether linking chose them (the fitted
# check is laxer on multi-passage and linked contexts). Fewer cheap answers served, fewer of them wrong;
# the sweep shows what that costs.
CASCADE_STRICT = Policy(
    "cascade_strict",
    {
        **CASCADE.overrides,
        "router": {"min_confidence": 0.9, "min_confidence_many": 0.9, "min_confidence_linked": 0.9},
    },
)
# The cascade with a laxer check in linked (multi-hop) contexts: a cheap answer of up to two words (not a
# number) stands at the linked bar, where the shipped check allows one word. Cheaper on multi-hop
# questions, at some F1 there and on the few linked single-hop ones (docs/results/quality.md).
CASCADE_LENIENT = Policy("cascade_lenient", {**CASCADE.overrides, "router": {"linked_max_words": 2}})
POLICIES = {policy.name: policy for policy in (STRONG, CHEAP, CASCADE, CASCADE_STRICT, CASCADE_LENIENT)}


@dataclass(frozen=True)
class Configuration:
    context: Context
    policy: Policy
    label: str | None = None  # a familiar name (naive_k5) where the configuration has one

    @property
    def name(self) -> str:
        return self.label or f"{self.context.name}, {self.policy.name}"

    def overrides(self) -> dict[str, object]:
        """The settings this configuration runs with: what a profile written from it holds. The answer
        cache is off: a sweep measures answers, and every question of a golden set is asked once."""
        return {**self.context.overrides(), **self.policy.overrides, "cache_enabled": False}


# The reference every saving is stated against, and LlamaIndex's default depth beside it.
NAIVE = (
    Configuration(Context(top_k=2, dense_only=True), STRONG, "naive_k2"),
    Configuration(Context(top_k=5, dense_only=True), STRONG, "naive_k5"),
)
BASELINE = "naive_k5"


def grid(
    top_ks: Sequence[int] = (3, 5, 8),
    floors: Sequence[float] = (0.3, 0.5, 0.7),
    budgets: Sequence[int] = (1500,),
    policies: Sequence[Policy] = tuple(POLICIES.values()),
    ablations: bool = True,
    links: Sequence[bool] = (True,),
) -> list[Configuration]:
    """The naive references, every (depth, floor, budget, linking in ``links``) with rerank and graph on,
    and, with ``ablations``, rerank, graph and linking each off at depth 5 and the lowest floor; each under
    every policy."""
    contexts: list[Context] = [
        Context(top_k=k, floor=f, budget=b, link=link)
        for k, f, b, link in itertools.product(top_ks, floors, budgets, links)
    ]
    if ablations:
        k = 5 if 5 in top_ks else top_ks[0]
        contexts += [
            Context(top_k=k, floor=min(floors), budget=budgets[0], rerank=False),
            Context(top_k=k, floor=min(floors), budget=budgets[0], graph=False),
            Context(top_k=k, floor=min(floors), budget=budgets[0], link=False),
        ]
    return [*NAIVE, *(Configuration(c, p) for c in unique(contexts) for p in policies)]


def unique(items: Iterable[Context]) -> list[Context]:
    return list(dict.fromkeys(items))
