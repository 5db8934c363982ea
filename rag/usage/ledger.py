"""The usage ledger: what every answer cost and saved, overall and per tenant, and the per-tenant daily
budget that reads from it.

It adds up the usage blocks the pipeline returns (``rag.types.Usage``) and counts nothing of its own,
so ``GET /v1/usage`` and ``/metrics`` always equal the sum of the responses. The sums live in a
``LedgerStore`` (SQLite in the data dir, or PostgreSQL in server mode) as counters per tenant and UTC
hour, written before the answer is returned: a restart, a crash or another worker sees the same totals
and the same day's spend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

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
    saved_by: dict[str, int] = field(default_factory=dict)  # cache / routing / trim / abstention → answers
    tiers: dict[str, TierTotals] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  # refused: rate_limit, budget, admission, deadline

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

    def counters(self) -> dict[str, float]:
        """The non-zero sums as flat counters: ``queries``, ``saved_by.trim``, ``tier.strong.calls``, …"""
        flat: dict[str, float] = {name: getattr(self, name) for name in _SCALARS}
        flat.update({f"saved_by.{reason}": n for reason, n in self.saved_by.items()})
        flat.update({f"rejected.{reason}": n for reason, n in self.rejected.items()})
        for name, tier in self.tiers.items():
            flat.update({f"tier.{name}.{f.name}": getattr(tier, f.name) for f in fields(TierTotals)})
        return {metric: value for metric, value in flat.items() if value}

    @classmethod
    def from_counters(cls, counters: Mapping[str, float]) -> UsageTotals:
        totals = cls()
        for metric, value in counters.items():
            if metric in _SCALARS:
                setattr(totals, metric, _typed(metric, value))
            elif metric.startswith("saved_by."):
                totals.saved_by[metric.removeprefix("saved_by.")] = round(value)
            elif metric.startswith("rejected."):
                totals.rejected[metric.removeprefix("rejected.")] = round(value)
            elif metric.startswith("tier."):
                name, _, attribute = metric.removeprefix("tier.").rpartition(".")
                tier = totals.tiers.setdefault(name, TierTotals())
                setattr(tier, attribute, _typed(attribute, value))
        return totals


_SCALARS = tuple(f.name for f in fields(UsageTotals) if f.name not in ("saved_by", "tiers", "rejected"))


def _typed(attribute: str, value: float) -> float | int:
    """Counters are stored as doubles (exact for integers below 2**53); integer fields read back as int."""
    return value if attribute.endswith("usd") else round(value)


SECONDS_PER_HOUR = 3600
HOURS_PER_DAY = 24


class LedgerStore(Protocol):
    """Where the ledger's counters live: summed per (tenant, UTC hour, metric), added to atomically."""

    def add(self, tenant: str, hour: int, counters: Mapping[str, float]) -> None:
        """Add ``counters`` to the tenant's hour, all or nothing, durably before returning."""
        ...

    def sums(self, tenant: str | None = None) -> dict[str, dict[str, float]]:
        """tenant (only ``tenant`` when given) → metric → sum over every hour."""
        ...

    def metric_sum(self, tenant: str, metric: str, first_hour: int, end_hour: int) -> float:
        """The tenant's ``metric`` summed over hours ``first_hour`` ≤ hour < ``end_hour``."""
        ...

    def hourly(self, tenant: str, first_hour: int, end_hour: int) -> dict[int, dict[str, float]]:
        """hour → metric → value for the tenant's hours ``first_hour`` ≤ hour < ``end_hour`` that have any."""
        ...

    def started_at(self, now: float) -> float:
        """When this ledger began counting (``now`` on its very first use)."""
        ...

    def close(self) -> None: ...


class UsageLedger:
    """Totals since the ledger began, overall and per tenant; the daily spend per tenant resets at 00:00
    UTC. Thread-safe and process-safe as far as its store is."""

    def __init__(self, store: LedgerStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self.started_at = store.started_at(clock())

    def record(self, tenant: str, usage: Usage, cache_hit: bool, escalated: bool, aborted: bool = False) -> None:
        delta = UsageTotals()
        delta.add(usage, cache_hit, escalated, aborted)
        self._store.add(tenant, self._hour(), delta.counters())

    def reject(self, tenant: str, reason: str) -> None:
        """Count a refused request (a rate limit, the daily budget, admission, a deadline passed in the
        queue): no usage, one count."""
        self._store.add(tenant, self._hour(), {f"rejected.{reason}": 1})

    def totals(self) -> UsageTotals:
        overall: dict[str, float] = {}
        for counters in self._store.sums().values():
            for metric, value in counters.items():
                overall[metric] = overall.get(metric, 0.0) + value
        return UsageTotals.from_counters(overall)

    def tenants(self) -> dict[str, UsageTotals]:
        return {tenant: UsageTotals.from_counters(counters) for tenant, counters in self._store.sums().items()}

    def tenant(self, tenant: str) -> UsageTotals | None:
        """The tenant's totals, or None before its first answer."""
        counters = self._store.sums(tenant).get(tenant)
        return UsageTotals.from_counters(counters) if counters else None

    def hourly(self, tenant: str, hours: int) -> list[tuple[datetime, UsageTotals]]:
        """The tenant's totals for each of the last ``hours`` UTC hours, the current one last (an hour
        without answers has zero totals): what a dashboard charts per hour, and per day by adding."""
        end = self._hour() + 1
        counted = self._store.hourly(tenant, end - hours, end)
        return [
            (datetime.fromtimestamp(hour * SECONDS_PER_HOUR, tz=UTC), UsageTotals.from_counters(counted.get(hour, {})))
            for hour in range(end - hours, end)
        ]

    def spent_today(self, tenant: str) -> float:
        first_hour = self._hour() // HOURS_PER_DAY * HOURS_PER_DAY
        return self._store.metric_sum(tenant, "cost_usd", first_hour, first_hour + HOURS_PER_DAY)

    def _hour(self) -> int:
        """The current UTC hour, counted from the epoch: the ledger's unit of time."""
        return int(self._clock() // SECONDS_PER_HOUR)

    def close(self) -> None:
        self._store.close()

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
            self.reject(tenant, "budget")
            resets = self.day_resets_at()
            raise BudgetExceeded(
                f"tenant {tenant!r} has spent ${spent:.4f} of its ${limit_usd:.4f} daily budget; "
                f"queries resume at {resets.isoformat()}",
                resets_at=resets,
            )
        return "cheap_only" if spent >= cheap_only_from * limit_usd else "normal"
