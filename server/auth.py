"""API keys: `Authorization: Bearer <key>` on every endpoint but the probes and metrics."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import error_response

OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/", "/favicon.ico"}  # and the page's files under /static/


def key_matches(presented: bytes, keys: list[str]) -> bool:
    # Compare bytes (a key may be any UTF-8 text; headers are bytes), with every key, in
    # constant time each, so timing tells nothing.
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented, key.encode())
    return found


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app, self.keys = app, keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not self.keys or path in OPEN_PATHS or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not key_matches(token.strip(), self.keys):
            response = error_response(401, "unauthorized", "a valid API key is required (Authorization: Bearer <key>)",
                                      {"WWW-Authenticate": "Bearer"}, scope["path"])
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
