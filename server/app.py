"""The FastAPI app: services built in the lifespan, routers, JSON errors, request metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth import ApiKeyMiddleware
from server.errors import install_error_handlers
from server.limits import RequestLimits
from server.openai import api_router as openai_api
from server.routes import ask, events, health, videos
from server.services import build_services
from server.settings import Settings

log = logging.getLogger("longvu")
STATIC = Path(__file__).parent / "static"


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
            await run_in_threadpool(svc.engine.stop)
            await svc.store.close()

    app = FastAPI(title="LongVU server", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(videos.router)
    app.include_router(ask.router)
    app.include_router(events.router)
    app.include_router(openai_api.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        """A page for people: upload, watch the ingest, ask, read the answer as it streams."""
        return FileResponse(STATIC / "index.html")

    app.add_middleware(RequestLimits, settings=settings)
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys)
    # Added last, so outermost: refused requests (401) are counted too.
    app.add_middleware(RequestCounter)
    return app


class RequestCounter:
    """Counts responses by route template, method and status. Plain ASGI: it never
    wraps a streamed body, so answer tokens reach the client without extra hops."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                svc = getattr(scope["app"].state, "services", None) if "app" in scope else None
                if svc is not None:
                    route = getattr(scope.get("route"), "path", "unmatched")
                    svc.metrics.http_requests.labels(route, scope["method"], str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)
