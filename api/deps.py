"""Shared request dependencies: the warm service and the caller's tenant."""

from __future__ import annotations

from fastapi import Request

from rag.service import Service
from rag.types import DEFAULT_TENANT


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_tenant() -> str:
    """Every request acts for one tenant; until API keys exist, that is the default tenant."""
    return DEFAULT_TENANT
