"""The one place where typed errors become HTTP responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.errors import RagError, Unauthorized

log = logging.getLogger(__name__)


# OpenAI's error ``type`` for a status, so that its SDKs and the clients built on them read ours: every
# error carries ``code`` and ``message`` (this service's) plus ``type`` and ``param`` (OpenAI's shape).
_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
# Routes that speak OpenAI's protocol (tagged so in api/routers/chat.py): a request it cannot take is a 400
# there, as OpenAI answers, where the rest of this API answers 422.
OPENAI_TAG = "openai-compatible"


def error_body(status_code: int, code: str, message: str, param: str | None = None) -> dict:
    kind = _TYPES.get(status_code, "server_error" if status_code >= 500 else "invalid_request_error")
    return {"error": {"code": code, "message": message, "type": kind, "param": param}}


def error_response(status_code: int, code: str, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status_code, content=error_body(status_code, code, message, param))


def _speaks_openai(request: Request) -> bool:
    route = request.scope.get("route")
    return OPENAI_TAG in (getattr(route, "tags", None) or ())


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def _rag_error(request: Request, exc: RagError) -> JSONResponse:
        if exc.status_code >= 500 and exc.retry_after() is None:  # a refusal under load is not a fault
            log.error("%s: %s", exc.code, exc.message)
        status = 400 if exc.status_code == 422 and _speaks_openai(request) else exc.status_code
        response = error_response(status, exc.code, exc.message, exc.param)
        retry_after = exc.retry_after()
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors
        )
        # The first offending field, without the "body" prefix: OpenAI's ``param``.
        location = [str(p) for p in errors[0].get("loc", ())] if errors else []
        param = ".".join(location[1:] if location[:1] == ["body"] else location) or None
        status = 400 if _speaks_openai(request) else 422
        return error_response(status, "invalid_request", details or "invalid request", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Errors raised by FastAPI/Starlette themselves, in the one error format. A body they could not
        parse at all (bytes that are not JSON text, a broken multipart stream) is an invalid request: 422,
        as for any other body that does not fit the schema, rather than an undocumented 400."""
        if exc.status_code == 400:
            return error_response(422, "invalid_request", f"could not read the request body: {exc.detail}")
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the server log")
