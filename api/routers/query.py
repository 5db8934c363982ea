"""/v1/query: a grounded, cited answer with its usage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import get_service, get_tenant
from api.schemas import ErrorResponse, QueryRequest, QueryResponse
from rag.service import Service

router = APIRouter(prefix="/v1", tags=["query"])


@router.post("/query", response_model=QueryResponse, responses={422: {"model": ErrorResponse}})
def query(
    request: QueryRequest,
    service: Annotated[Service, Depends(get_service)],
    tenant: Annotated[str, Depends(get_tenant)],
) -> QueryResponse:
    answer = service.pipeline.answer(request.question, tenant, request.top_k, request.token_budget)
    return QueryResponse.of(answer)
