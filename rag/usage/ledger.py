"""The usage ledger: what every answer cost and saved, summed since start, overall and per tenant, and
the per-tenant daily budget that reads from it.

It adds up the usage blocks the pipeline returns (``rag.types.Usage``) and counts nothing of its own,
so ``GET /v1/usage`` and ``/metrics`` always equal the sum of the responses.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from rag.errors import BudgetExceeded
from rag.types import Usage


@dataclass
class TierTotals:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class UsageTotals:
    queries: int = 0
    cache_hits: int = 0
    escalations: int = 0
    aborted: int = 0  # streams the client left before the end (their tokens are still counted)
    embedding_tokens: int = 0
    rerank_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    reference_cost_usd: float = 0.0  # what the answers would have cost the naive way (where known)
    saved_usd: float = 0.0
    saved_by: dict[str, int] = field(default_factory=dict)  # "cache" / "routing" / "trim" → answers
    tiers: dict[str, TierTotals] = field(default_factory=dict)

    def add(self, usage: Usage, cache_hit: bool, escalated: bool, aborted: bool) -> None:
        self.queries += 1
        self.cache_hits += cache_hit
        self.escalations += escalated
        self.aborted += aborted
        self.embedding_tokens += usage.embedding_tokens
        self.rerank_tokens += usage.rerank_tokens
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.cost_usd += usage.cost_usd
        if usage.reference_cost_usd is not None:
            self.reference_cost_usd += usage.reference_cost_usd
            self.saved_usd += usage.reference_cost_usd - usage.cost_usd
        for reason in usage.saved_by:
            self.saved_by[reason] = self.saved_by.get(reason, 0) + 1
        for g in usage.generations:
            tier = self.tiers.setdefault(g.tier, TierTotals())
            tier.calls += 1
            tier.prompt_tokens += g.prompt_tokens
            tier.completion_tokens += g.completion_tokens
            tier.cost_usd += g.cost_usd

    def as_dict(self) -> dict:
        return asdict(self)


def _utc_day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")


class UsageLedger:
    """Thread-safe totals since the process started; the daily spend per tenant resets at 00:00 UTC."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._total = UsageTotals()
        self._tenants: dict[str, UsageTotals] = {}
        self._spent: dict[tuple[str, str], float] = {}  # (tenant, UTC day) → USD
        self.started_at = clock()

    def record(self, tenant: str, usage: Usage, cache_hit: bool, escalated: bool, aborted: bool = False) -> None:
        with self._lock:
            self._total.add(usage, cache_hit, escalated, aborted)
            self._tenants.setdefault(tenant, UsageTotals()).add(usage, cache_hit, escalated, aborted)
            key = (tenant, _utc_day(self._clock()))
            self._spent[key] = self._spent.get(key, 0.0) + usage.cost_usd

    def totals(self) -> UsageTotals:
        with self._lock:
            return copy.deepcopy(self._total)

    def tenants(self) -> dict[str, UsageTotals]:
        with self._lock:
            return copy.deepcopy(self._tenants)

    def spent_today(self, tenant: str) -> float:
        with self._lock:
            return self._spent.get((tenant, _utc_day(self._clock())), 0.0)

    def day_resets_at(self) -> datetime:
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)

    def admit(
        self, tenant: str, limit_usd: float | None, cheap_only_from: float
    ) -> Literal["normal", "cheap_only"]:
        """Before answering: refuse past the tenant's daily limit; near it (``cheap_only_from`` of the
        limit spent), answer on the cheap tier only."""
        if limit_usd is None:
            return "normal"
        spent = self.spent_today(tenant)
        if spent >= limit_usd:
            resets = self.day_resets_at()
            raise BudgetExceeded(
                f"tenant {tenant!r} has spent ${spent:.4f} of its ${limit_usd:.4f} daily budget; "
                f"queries resume at {resets.isoformat()}",
                resets_at=resets,
            )
        return "cheap_only" if spent >= cheap_only_from * limit_usd else "normal"
