"""How the app is served, by `python -m server` and by the tests alike: uvicorn with our
connection guards, and a graceful shutdown that starts with the app's drain."""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from server.connections import protocol_for
from server.settings import Settings

SHUTDOWN_SLACK_S = 10.0  # beyond the answers' grace: the last events, the jobs' lease releases


class GracefulServer(uvicorn.Server):
    """On SIGTERM uvicorn stops listening and waits for the open requests; before that wait
    the app drains (`Services.drain`), so that the open requests end within the grace period
    instead of whenever their answers would have."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        services = getattr(self.app.state, "services", None)
        if services is not None:
            await services.drain()
        await super().shutdown(sockets)


def make_server(app: FastAPI, settings: Settings, host: str, port: int, log_level: str = "info") -> GracefulServer:
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                            http=protocol_for(settings),
                            timeout_graceful_shutdown=int(settings.shutdown_grace_s + SHUTDOWN_SLACK_S))
    return GracefulServer(config, app)
