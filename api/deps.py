"""Shared request dependencies: the warm service and the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.keys import Authenticator
from rag.service import Service
from rag.types import DEFAULT_TENANT

# auto_error off: a missing or malformed header becomes our own 401, in the one error format.
_bearer = HTTPBearer(auto_error=False, description="an API key, e.g. from `rag keys create --tenant NAME`")


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_tenant(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The tenant the API key belongs to; the default tenant when auth is off (development mode)."""
    authenticator: Authenticator | None = request.app.state.authenticator
    if authenticator is None:
        return DEFAULT_TENANT
    return authenticator.tenant_for(credentials.credentials if credentials else None)
