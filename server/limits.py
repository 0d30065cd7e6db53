"""Request limits enforced before a route reads anything: unambiguous framing, header size,
body size by route (a declared length over the limit is refused at once, a body that
outgrows it while streaming stops there), and a read timeout between the pieces of a body."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import ApiError, error_response
from server.settings import Settings

SMALL_BODY = 256 * 1024  # JSON bodies: a 32,000-character question, escaped, fits
HEADER_BYTES = 32 * 1024
HEADER_COUNT = 100


def body_limit(settings: Settings, method: str, path: str) -> int:
    if method == "POST" and path == "/videos":
        return settings.max_upload_bytes + 64 * 1024  # the multipart envelope
    if method == "POST" and path == "/v1/chat/completions":
        return settings.max_upload_bytes * 4 // 3 + (1 << 20)  # a data URL (base64) and the messages
    return SMALL_BODY


class RequestLimits:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = scope["headers"]
        names = [name for name, _ in headers]
        if names.count(b"content-length") > 1 or (b"content-length" in names and b"transfer-encoding" in names):
            # RFC 9112 6.3: a proxy in front may frame this body otherwise, so what follows on
            # the connection cannot be trusted; refuse and close it (request smuggling).
            await error_response(400, "ambiguous_framing", "a request may carry one Content-Length or a "
                                 "Transfer-Encoding, not both or several", {"Connection": "close"},
                                 path)(scope, receive, send)
            return
        if len(headers) > HEADER_COUNT or sum(len(k) + len(v) for k, v in headers) > HEADER_BYTES:
            await error_response(431, "headers_too_large", "the request headers are too large",
                                 None, path)(scope, receive, send)
            return
        limit = body_limit(self.settings, scope["method"], path)
        declared = dict(headers).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await error_response(413, "too_large", f"the request body is larger than {limit} bytes",
                                 None, path)(scope, receive, send)
            return
        seen = 0
        body_done = False
        timeout = self.settings.body_read_timeout_s

        async def limited() -> Message:
            nonlocal seen, body_done
            if body_done:  # what follows is the wait for a disconnect: as long as a stream lasts
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except TimeoutError as exc:
                raise ApiError(408, "body_timeout", f"no part of the request body came for {timeout:g} s") from exc
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise ApiError(413, "too_large", f"the request body is larger than {limit} bytes")
                body_done = not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)
