"""The FastAPI app: services built in the lifespan, routers, JSON errors, request metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth import ApiKeyMiddleware
from server.errors import JsonErrors, ShuttingDown, error_response, install_error_handlers
from server.limits import RequestLimits
from server.openai import api_router as openai_api
from server.openai.protocol import ChatCompletionRequest
from server.routes import ask, events, health, moments, streams, videos, watches
from server.schemas import AskRequest, ChaptersRequest, MomentsRequest, WatchRequest
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
        svc.streams.start_watching()
        log.info("model %s ready on %s", svc.model.fingerprint, svc.model.device)
        try:
            yield
        finally:
            await svc.jobs.shutdown()
            await svc.streams.shutdown()
            await svc.streams.webhooks.close()
            await run_in_threadpool(svc.engine.stop)
            await svc.store.close()

    app = FastAPI(title="LongVU server", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(videos.router)
    app.include_router(streams.router)
    app.include_router(ask.router)
    app.include_router(moments.router)
    app.include_router(watches.router)
    app.include_router(events.router)
    app.include_router(openai_api.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        """A page for people: upload, watch the ingest, ask, read the answer as it streams."""
        return FileResponse(STATIC / "index.html")

    @app.api_route("/favicon.ico", methods=["GET", "HEAD"], include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon")

    app.openapi = lambda: openapi_with(app, [AskRequest, MomentsRequest, ChaptersRequest,
                                                               WatchRequest, ChatCompletionRequest])  # type: ignore[method-assign]
    app.add_middleware(RequestLimits, settings=settings)
    app.add_middleware(RefuseWhileDraining)
    app.add_middleware(JsonErrors)
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys)
    # Added last, so outermost: refused requests (401) are counted too.
    app.add_middleware(RequestCounter)
    return app


def openapi_with(app: FastAPI, bodies: list[type[BaseModel]]) -> dict[str, Any]:
    """FastAPI's document plus the request bodies our routes parse themselves (off the event
    loop, see `server.routes.json_body`), which FastAPI cannot see."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, routes=app.routes)
        _, defs = models_json_schema([(model, "validation") for model in bodies],
                                     ref_template="#/components/schemas/{model}")
        document.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        app.openapi_schema = document
    return app.openapi_schema


class RefuseWhileDraining:
    """Once the server drains (SIGTERM), new work (every POST: uploads, asks, chat) is a 503
    `shutting_down` before its body is read; reads and running streams go on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        svc = getattr(scope["app"].state, "services", None) if scope["type"] == "http" else None
        if svc is not None and svc.draining and scope["method"] == "POST":
            refusal = ShuttingDown()
            await error_response(refusal.status, refusal.code, refusal.message, refusal.headers,
                                 scope["path"])(scope, receive, send)
            return
        await self.app(scope, receive, send)


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
