"""The FastAPI application: composes routers; the service is opened and warmed once at start-up."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.routers import documents, graph, health, query, usage
from rag import __version__
from rag.keys import KEYS_FILE, Authenticator, KeyStore
from rag.service import Service
from rag.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service.open(settings)
        keys = KeyStore(settings.data_dir / KEYS_FILE) if settings.auth == "api_keys" else None
        try:
            service.warm_up(generation=settings.warm_generation)
            app.state.service = service
            app.state.authenticator = Authenticator(keys, settings.api_keys) if keys else None
            yield
        finally:
            if keys:
                keys.close()
            service.close()

    app = FastAPI(
        title="costrag",
        version=__version__,
        description="Upload documents, ask questions, get grounded and cited answers at a low token cost.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(documents.router)
    app.include_router(query.router)
    app.include_router(usage.router)
    app.include_router(graph.router)
    return app
