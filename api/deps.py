"""Shared request dependencies: the warm service and the caller's tenant."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.ratelimit import Kind, RateLimiter
from rag.errors import InvalidRequest, RateLimited
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


def rate_limited(kind: Kind) -> Callable[..., None]:
    """A route dependency: the request counts against its key's and its tenant's ``kind`` limits (an upload
    also against the bytes it declares); past one, 429, and the rejection is counted in the ledger."""

    def dependency(
        request: Request,
        tenant: Annotated[str, Depends(get_tenant)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        key = credentials.credentials if credentials and request.app.state.authenticator else None
        try:
            charges: list[tuple[Kind, int]] = [(kind, 1)]
            declared = request.headers.get("content-length", "")
            if kind == "upload" and declared.isdigit():
                charges.append(("upload_bytes", int(declared)))
            limiter.check_all(tenant, key, charges)
        except RateLimited:
            get_service(request).ledger.reject(tenant, "rate_limit")
            raise

    return dependency


MAX_REQUEST_TIMEOUT_SECONDS = 3600.0


def request_deadline(request: Request) -> float:
    """When the request's answer stops being worth generating (``time.monotonic()`` seconds): the service's
    request timeout after arrival, or less if the client says so in ``X-Request-Timeout`` (seconds)."""
    timeout = get_service(request).settings.request_timeout_seconds
    given = request.headers.get("x-request-timeout")
    if given is not None:
        try:
            asked = float(given)
        except ValueError:
            raise InvalidRequest("X-Request-Timeout must be a number of seconds", "X-Request-Timeout") from None
        if not 0 < asked <= MAX_REQUEST_TIMEOUT_SECONDS:
            raise InvalidRequest(
                f"X-Request-Timeout must be between 0 and {MAX_REQUEST_TIMEOUT_SECONDS:g} seconds", "X-Request-Timeout"
            )
        timeout = min(timeout, asked)
    return time.monotonic() + timeout
