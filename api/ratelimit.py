"""Rate limits per API key and per tenant, separately for queries, retrievals and uploads (and uploaded
bytes), with the `limits` package's moving windows.

Each request is checked against its key's limits, then its tenant's (all of the tenant's keys together;
a tenant may have its own in ``tenant_rate_limits``). The counters live in this process by default; with
``rate_limit_storage=redis://…`` they live in Redis-compatible storage (Valkey, Redis) that every worker
shares, so two workers together admit what one limit allows. Past a limit: ``RateLimited`` (429) with the
seconds until the window admits the request again, and a message that names the limit.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from rag.errors import RateLimited
from rag.settings import RateLimitSettings, Settings

Kind = Literal["query", "retrieve", "upload", "upload_bytes"]
_NOUN = {"query": "questions", "retrieve": "retrievals", "upload": "uploads", "upload_bytes": "uploaded bytes"}
NAMESPACE = "costrag"


def key_id(api_key: str) -> str:
    """A key's identity in the counters: a digest prefix, never the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Scope:
    name: str  # "key" or "tenant", for the message
    label: str  # what the message shows: the tenant's name or the key's digest prefix
    identity: str
    limits: list[RateLimitItem]


class RateLimiter:
    """Checks a request against its key's and its tenant's limits; ``warm_up`` connects the storage."""

    def __init__(self, settings: Settings) -> None:
        self._per_key = settings.rate_limits_per_key
        self._per_tenant = settings.rate_limits_per_tenant
        # An override changes the limits it names; the others stay the per-tenant defaults.
        self._overrides = {
            tenant: self._per_tenant.model_copy(update={name: getattr(given, name) for name in given.model_fields_set})
            for tenant, given in settings.tenant_rate_limits.items()
        }
        self._storage_url = settings.rate_limit_storage
        self._limiter: MovingWindowRateLimiter | None = None
        self._parsed: dict[str, list[RateLimitItem]] = {}

    def warm_up(self) -> None:
        """Open the storage and fail at start-up if it cannot be reached."""
        if self._limiter is None:
            storage = storage_from_string(self._storage_url, key_prefix=NAMESPACE)
            if not storage.check():
                raise RuntimeError(f"the rate-limit storage {self._storage_url!r} does not answer")
            self._limiter = MovingWindowRateLimiter(storage)

    def check(self, kind: Kind, tenant: str, api_key: str | None, cost: int = 1) -> None:
        """Count one request (or ``cost`` bytes) of ``kind``; raise ``RateLimited`` past any limit."""
        self.check_all(tenant, api_key, [(kind, cost)])

    def check_all(self, tenant: str, api_key: str | None, charges: Sequence[tuple[Kind, int]]) -> None:
        """Count several charges of one request (an upload and its bytes) together: if any is refused,
        none is counted."""
        self.warm_up()
        assert self._limiter is not None
        checks = [
            (kind, cost, scope, limit)
            for kind, cost in charges
            for scope in self._scopes(kind, tenant, api_key)
            for limit in scope.limits
        ]
        # Every limit is tested before any is counted, so a refused request uses up none of them (two
        # workers racing between the test and the count can each be admitted once more).
        for kind, cost, scope, limit in checks:
            if cost > limit.amount:
                raise RateLimited(
                    f"{cost} {_NOUN[kind]} in one request exceed the limit of {limit.amount} per "
                    f"{_window(limit)} for the {scope.name} {scope.label}",
                    retry_after_seconds=limit.get_expiry(),
                )
            if not self._limiter.test(limit, scope.identity, kind, cost=cost):
                raise self._refusal(kind, scope, limit)
        for kind, cost, scope, limit in checks:
            if not self._limiter.hit(limit, scope.identity, kind, cost=cost):
                raise self._refusal(kind, scope, limit)

    def _scopes(self, kind: Kind, tenant: str, api_key: str | None) -> list[_Scope]:
        """The key's limits of ``kind`` (when the request has a key), then the tenant's."""
        scopes = [_Scope("tenant", repr(tenant), f"tenant:{tenant}", self._limits(self._tenant_limits(tenant), kind))]
        if api_key is not None:
            digest = key_id(api_key)
            scopes.insert(0, _Scope("key", digest[:8], f"key:{digest}", self._limits(self._per_key, kind)))
        return scopes

    def _refusal(self, kind: Kind, scope: _Scope, limit: RateLimitItem) -> RateLimited:
        return RateLimited(
            f"rate limit reached: {limit.amount} {_NOUN[kind]} per {_window(limit)} for the {scope.name} "
            f"{scope.label}",
            retry_after_seconds=self._wait(limit, scope.identity, kind),
        )

    def _tenant_limits(self, tenant: str) -> RateLimitSettings:
        return self._overrides.get(tenant, self._per_tenant)

    def _limits(self, settings: RateLimitSettings, kind: Kind) -> list[RateLimitItem]:
        text = getattr(settings, kind)
        if text not in self._parsed:
            self._parsed[text] = list(parse_many(text)) if text.strip() else []
        return self._parsed[text]

    def _wait(self, limit: RateLimitItem, identity: str, kind: Kind) -> int:
        assert self._limiter is not None
        stats = self._limiter.get_window_stats(limit, identity, kind)
        return max(1, math.ceil(stats.reset_time - time.time()))


def _window(limit: RateLimitItem) -> str:
    unit = limit.GRANULARITY.name
    return unit if limit.multiples == 1 else f"{limit.multiples} {unit}s"
