"""/v1/query: a grounded, cited answer with its usage, whole or as server-sent events."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import get_service, get_tenant, rate_limited, request_deadline
from api.errors import error_body
from api.schemas import (
    ErrorResponse,
    PassageOut,
    QueryRequest,
    QueryResponse,
    RetrieveRequest,
    RetrieveResponse,
)
from api.streaming import CLIENT_CLOSED_REQUEST, SSE_HEADERS, answer_unless_gone, pieces
from rag.errors import RagError
from rag.service import Service
from rag.types import Answer

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["query"])

def _event(name: str, payload: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _server_sent(events: Iterator[str | Answer]) -> AsyncIterator[str]:
    """``token`` events as the answer is generated, then ``done`` with the whole response (or ``error``)."""
    try:
        async for item in pieces(events):
            if isinstance(item, Answer):
                yield _event("done", QueryResponse.of(item).model_dump())
            else:
                yield _event("token", {"text": item})
    except RagError as exc:
        yield _event("error", error_body(exc.status_code, exc.code, exc.message, exc.param))
    except Exception:
        log.exception("stream failed")
        yield _event("error", error_body(500, "internal_error", "internal error; see the server log"))


@router.post(
    "/query",
    response_model=QueryResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or server-sent events with stream"},
        422: {"model": ErrorResponse},
        429: {"model": ErrorResponse, "description": "a rate limit is reached, or the tenant's daily budget is spent"},
        503: {"model": ErrorResponse, "description": "overloaded: generation's queue is too long, or the deadline passed in it"},
    },
    dependencies=[Depends(rate_limited("query"))],
)
async def query(
    request: QueryRequest,
    http: Request,
    service: Annotated[Service, Depends(get_service)],
    tenant: Annotated[str, Depends(get_tenant)],
    deadline: Annotated[float, Depends(request_deadline)],
) -> QueryResponse | StreamingResponse | Response:
    # Validation, the budget check, the cache and admission run here, before any response starts: a refusal
    # is a plain JSON error, streamed or not.
    events = await run_in_threadpool(
        partial(
            service.pipeline.answer_stream,
            request.question, tenant, request.top_k, request.token_budget,
            history=request.turns(), deadline=deadline,
        )
    )
    if request.stream:
        return StreamingResponse(_server_sent(events), media_type="text/event-stream", headers=SSE_HEADERS)
    answer = await answer_unless_gone(http, events)
    if answer is None:  # the client left: generation stopped, what it spent is counted
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return QueryResponse.of(answer)


@router.post(
    "/retrieve",
    response_model=RetrieveResponse,
    responses={422: {"model": ErrorResponse}, 429: {"model": ErrorResponse, "description": "a rate limit is reached"}},
    dependencies=[Depends(rate_limited("retrieve"))],
)
def retrieve(
    request: RetrieveRequest,
    service: Annotated[Service, Depends(get_service)],
    tenant: Annotated[str, Depends(get_tenant)],
) -> RetrieveResponse:
    """The context a question would get, without generating an answer (search, or one's own LLM)."""
    started = time.perf_counter()
    question, top_k, token_budget = service.pipeline.validate(request.question, request.top_k, request.token_budget)
    retrieval = service.retriever.retrieve(tenant, question, top_k, token_budget)
    return RetrieveResponse(
        passages=[
            PassageOut(
                document_id=p.chunk.document_id, chunk_id=p.chunk.id, title=p.chunk.title, text=p.text, score=p.score
            )
            for p in retrieval.passages
        ],
        rerank_tokens=retrieval.rerank_tokens,
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
        stage_ms={k: round(v, 1) for k, v in retrieval.stage_ms.items()},
        debug=retrieval.debug,
    )
