"""/v1/usage and /metrics: the caller's tenant's totals since the ledger began, as JSON and as Prometheus
text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse

from api.deps import get_service, get_tenant
from api.schemas import BudgetOut, ErrorResponse, HourlyUsage, HourOut, UsageReport, UsageTotalsOut
from rag.generation.gate import GateStats
from rag.service import Service
from rag.usage.ledger import UsageTotals

router = APIRouter(tags=["usage"])
MAX_HOURS = 24 * 92  # a quarter


def _own(service: Service, tenant: str) -> dict[str, UsageTotals]:
    """A tenant sees its own counters only."""
    totals = service.ledger.tenant(tenant)
    return {tenant: totals} if totals is not None else {}


@router.get("/v1/usage", response_model=UsageReport)
def usage(
    service: Annotated[Service, Depends(get_service)], tenant: Annotated[str, Depends(get_tenant)]
) -> UsageReport:
    own = _own(service, tenant).get(tenant, UsageTotals())
    limit = service.settings.budget_usd_per_day
    return UsageReport(
        since=datetime.fromtimestamp(service.ledger.started_at, tz=UTC).isoformat(),
        tenant=tenant,
        total=UsageTotalsOut(**own.as_dict()),
        budget=BudgetOut(
            limit_usd_per_day=limit,
            spent_today_usd=service.ledger.spent_today(tenant),
            cheap_only_from_usd=None if limit is None else limit * service.settings.budget_cheap_only_from,
            resets_at=service.ledger.day_resets_at().isoformat(),
        ),
    )


@router.get("/v1/usage/hourly", response_model=HourlyUsage, responses={422: {"model": ErrorResponse}})
def hourly_usage(
    service: Annotated[Service, Depends(get_service)],
    tenant: Annotated[str, Depends(get_tenant)],
    hours: Annotated[int, Query(ge=1, le=MAX_HOURS, description="how many UTC hours back, the current one included")] = 48,
) -> HourlyUsage:
    """The caller's tenant's usage per UTC hour (spend, saving, cache hits, escalations, tokens per tier),
    read from the persisted ledger: the cost dashboard's series (a day is the sum of its hours)."""
    return HourlyUsage(
        tenant=tenant,
        hours=[
            HourOut(hour=start.isoformat(), totals=UsageTotalsOut(**totals.as_dict()))
            for start, totals in service.ledger.hourly(tenant, hours)
        ],
    )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(tenants: dict[str, UsageTotals]) -> str:
    """Counters per tenant (and per tier) in the Prometheus text exposition format, version 0.0.4."""
    scalar = {
        "rag_queries_total": ("queries", "answers returned"),
        "rag_cache_hits_total": ("cache_hits", "answers served from the answer cache"),
        "rag_escalations_total": ("escalations", "cheap answers the router sent on to the strong tier"),
        "rag_aborted_streams_total": ("aborted", "streams the client left before the end"),
        "rag_embedding_tokens_total": ("embedding_tokens", "question tokens embedded"),
        "rag_rerank_tokens_total": ("rerank_tokens", "tokens read by the cross-encoder"),
        "rag_cost_usd_total": ("cost_usd", "generation cost in USD"),
        "rag_reference_cost_usd_total": ("reference_cost_usd", "cost of the naive reference in USD"),
        "rag_saved_usd_total": ("saved_usd", "reference cost minus cost, in USD"),
    }
    lines: list[str] = []
    for metric, (attribute, help_text) in scalar.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        for tenant, totals in sorted(tenants.items()):
            lines.append(f'{metric}{{tenant="{_label(tenant)}"}} {getattr(totals, attribute)}')
    lines += ["# HELP rag_rejections_total requests refused before any work, by reason", "# TYPE rag_rejections_total counter"]
    for tenant, totals in sorted(tenants.items()):
        for reason, count in sorted(totals.rejected.items()):
            lines.append(f'rag_rejections_total{{tenant="{_label(tenant)}",reason="{_label(reason)}"}} {count}')
    per_tier = {
        "rag_generation_calls_total": ("calls", "generation calls"),
        "rag_prompt_tokens_total": ("prompt_tokens", "prompt tokens sent"),
        "rag_completion_tokens_total": ("completion_tokens", "completion tokens generated"),
        "rag_tier_cost_usd_total": ("cost_usd", "generation cost in USD"),
    }
    for metric, (attribute, help_text) in per_tier.items():
        lines += [f"# HELP {metric} {help_text}, per tier", f"# TYPE {metric} counter"]
        for tenant, totals in sorted(tenants.items()):
            for tier, tier_totals in sorted(totals.tiers.items()):
                value = getattr(tier_totals, attribute)
                lines.append(f'{metric}{{tenant="{_label(tenant)}",tier="{_label(tier)}"}} {value}')
    return "\n".join(lines) + "\n"


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(
    service: Annotated[Service, Depends(get_service)], tenant: Annotated[str, Depends(get_tenant)]
) -> PlainTextResponse:
    """The caller's tenant's counters; a scraper sends that tenant's key as a bearer token."""
    text = prometheus_text(_own(service, tenant)) + gate_text(service.gate.stats())
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def gate_text(stats: GateStats) -> str:
    """This worker's generation queue, as gauges (each worker reports its own)."""
    gauges = {
        "rag_generation_queue_length": (stats.queued, "questions waiting for a generation slot in this worker"),
        "rag_generation_running": (stats.running, "questions generating in this worker"),
        "rag_generation_slots": (stats.slots, "generation slots of this worker"),
        "rag_generation_wait_seconds": (round(stats.mean_wait_seconds, 4), "recent mean wait for a slot"),
        "rag_generation_service_seconds": (round(stats.service_seconds, 4), "recent mean time a question holds a slot"),
    }
    lines: list[str] = []
    for metric, (value, help_text) in gauges.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge", f"{metric} {value}"]
    return "\n".join(lines) + "\n"
