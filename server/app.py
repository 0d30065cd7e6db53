"""The FastAPI app: services built in the lifespan, routers, JSON errors, request metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from server.auth import ApiKeyMiddleware
from server.errors import install_error_handlers
from server.routes import ask, health, videos
from server.services import build_services
from server.settings import Settings

log = logging.getLogger("longvu")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = await run_in_threadpool(build_services, settings)
        app.state.services = svc
        log.info("model %s ready on %s", svc.model.fingerprint, svc.model.device)
        try:
            yield
        finally:
            await svc.jobs.shutdown()
            await run_in_threadpool(svc.scheduler.stop)
            await svc.store.close()

    app = FastAPI(title="LongVU server", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(videos.router)
    app.include_router(ask.router)

    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys)

    # Added last, so outermost: refused requests (401) are counted too.
    @app.middleware("http")
    async def count_requests(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        svc = getattr(request.app.state, "services", None)
        if svc is not None:
            svc.metrics.http_requests.labels(template, request.method, str(response.status_code)).inc()
        return response
    return app
