"""Request body limits, enforced before a route reads anything: a declared length over the
route's limit is refused at once, and a body that outgrows it while streaming stops there."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_response
from server.settings import Settings

SMALL_BODY = 256 * 1024  # JSON bodies: a 32,000-character question, escaped, fits


def body_limit(settings: Settings, method: str, path: str) -> int:
    if method == "POST" and path == "/videos":
        return settings.max_upload_bytes + 64 * 1024  # the multipart envelope
    if method == "POST" and path == "/v1/chat/completions":
        return settings.max_upload_bytes * 4 // 3 + (1 << 20)  # a data URL (base64) and the messages
    return SMALL_BODY


class BodyLimit:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(self.settings, scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            response = error_response(413, "too_large", f"the request body is larger than {limit} bytes",
                                      None, scope["path"])
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"the request body is larger than {limit} bytes")
            return message

        await self.app(scope, counted, send)
