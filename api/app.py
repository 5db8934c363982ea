"""The FastAPI application: composes routers; the service is opened and warmed once at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.limits import DeclaredBodyLimit, upload_body_limit
from api.ratelimit import RateLimiter
from api.routers import chat, documents, graph, health, query, usage, web
from api.schemas import ErrorResponse
from rag import __version__
from rag.keys import Authenticator
from rag.service import Service
from rag.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service.open(settings)
        try:
            service.warm_up(generation=settings.warm_generation)
            app.state.service = service
            app.state.authenticator = Authenticator(service.keys, settings.api_keys) if service.keys else None
            app.state.rate_limiter = RateLimiter(settings)
            app.state.rate_limiter.warm_up()
            yield
        finally:
            service.close()

    app = FastAPI(
        title="costrag",
        version=__version__,
        description="Upload documents, ask questions, get grounded and cited answers at a low token cost.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    keyed = {401: {"model": ErrorResponse, "description": "no API key, or an unknown one"}}
    app.include_router(health.router)
    # The whole multipart body is bounded before it is spooled to disk (api/limits.py).
    upload_body = upload_body_limit(settings.max_files_per_request, settings.max_upload_bytes)
    app.add_middleware(DeclaredBodyLimit, path=documents.router.prefix, limit=upload_body)
    app.include_router(documents.router, responses=keyed, max_body_size=upload_body)
    app.include_router(query.router, responses=keyed)
    app.include_router(usage.router, responses=keyed)
    app.include_router(graph.router, responses=keyed)
    app.include_router(chat.router)
    app.include_router(web.router)
    app.mount(web.ASSETS_PATH, web.assets(), name="assets")
    return app
