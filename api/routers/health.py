"""/healthz: the service is up. Open to all, so it says nothing about any tenant's data."""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas import Health
from rag import __version__

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok", version=__version__)
