"""/v1/graph: inspect the knowledge graph built from the tenant's documents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import get_service, get_tenant
from api.schemas import EntityList, EntityOut, ErrorResponse, NeighborList, NeighborOut
from rag.errors import NotFound
from rag.service import Service

router = APIRouter(prefix="/v1/graph", tags=["graph"])


def _graph(service: Service):
    if service.graph is None:
        raise NotFound("the knowledge graph is off (RAG_KG_ENABLED=false)")
    return service.graph


@router.get("/entities", response_model=EntityList)
def entities(
    service: Annotated[Service, Depends(get_service)],
    tenant: Annotated[str, Depends(get_tenant)],
    q: Annotated[str, Query(min_length=1, max_length=200, description="prefix or part of an entity's name")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> EntityList:
    found = _graph(service).entities(tenant, q, limit)
    return EntityList(
        entities=[
            EntityOut(
                name=e.name,
                mentions=e.mentions,
                chunks=len(e.chunk_ids),
                surfaces=list(e.surfaces),
                is_title=e.is_title,
                degree=e.degree,
            )
            for e in found
        ]
    )


@router.get("/entities/{name}/neighbors", response_model=NeighborList, responses={404: {"model": ErrorResponse}})
def neighbors(
    name: str,
    service: Annotated[Service, Depends(get_service)],
    tenant: Annotated[str, Depends(get_tenant)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> NeighborList:
    found = _graph(service).neighbors(tenant, name, limit)
    return NeighborList(
        entity=name,
        neighbors=[NeighborOut(name=n.name, weight=n.weight, labels=list(n.labels), is_title=n.is_title) for n in found],
    )
