"""/v1/usage and /metrics: the ledger's totals since start, as JSON and as Prometheus text."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from api.deps import get_service
from api.schemas import UsageReport, UsageTotalsOut
from rag.ledger import UsageTotals
from rag.service import Service

router = APIRouter(tags=["usage"])


@router.get("/v1/usage", response_model=UsageReport)
def usage(service: Annotated[Service, Depends(get_service)]) -> UsageReport:
    ledger = service.ledger
    return UsageReport(
        since=datetime.fromtimestamp(ledger.started_at, tz=timezone.utc).isoformat(),
        total=UsageTotalsOut(**ledger.totals().as_dict()),
        tenants={t: UsageTotalsOut(**u.as_dict()) for t, u in ledger.tenants().items()},
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
def metrics(service: Annotated[Service, Depends(get_service)]) -> PlainTextResponse:
    return PlainTextResponse(prometheus_text(service.ledger.tenants()), media_type="text/plain; version=0.0.4")
