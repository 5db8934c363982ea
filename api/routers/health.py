"""/healthz: the service is up, with what it holds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import get_service, get_tenant
from api.schemas import Health
from rag import __version__
from rag.service import Service

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz(
    service: Annotated[Service, Depends(get_service)], tenant: Annotated[str, Depends(get_tenant)]
) -> Health:
    return Health(
        status="ok",
        documents=len(service.registry.list(tenant)),
        chunks=service.registry.count_chunks(tenant),
        version=__version__,
    )
