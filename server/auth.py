"""API keys: `Authorization: Bearer <key>` on every endpoint but the probes and metrics; the
key's tenant (`server.tenants`) goes with the request."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import error_response
from server.tenants import SCOPE_KEY, ApiKey, parse_keys

OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/", "/favicon.ico"}  # and the page's files under /static/


def matching_tenant(presented: bytes, keys: list[ApiKey]) -> str | None:
    """The tenant of the key presented, or None. Bytes are compared (a key may be any UTF-8
    text; headers are bytes), with every key, in constant time each, so timing tells nothing."""
    found = None
    for key in keys:
        if hmac.compare_digest(presented, key.key) and found is None:
            found = key.tenant
    return found


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app, self.keys = app, parse_keys(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not self.keys or path in OPEN_PATHS or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        tenant = matching_tenant(token.strip(), self.keys) if scheme.lower() == b"bearer" else None
        if tenant is None:
            response = error_response(401, "unauthorized", "a valid API key is required (Authorization: Bearer <key>)",
                                      {"WWW-Authenticate": "Bearer"}, scope["path"])
            await response(scope, receive, send)
            return
        scope[SCOPE_KEY] = tenant
        await self.app(scope, receive, send)
