"""What a connection may cost before it is a request: uvicorn's h11 protocol with a deadline
for a request's headers (a client trickling bytes, or one that connects and says nothing,
holds a file descriptor for ever otherwise), a cap on open connections, JSON refusals
(uvicorn's own are plain text), and a lingering close, so that a refusal sent before the
body was read (a 413) reaches the client instead of being lost to a TCP reset."""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from server.errors import error_body
from server.settings import Settings


def raw_error(status: int, code: str, message: str) -> bytes:
    """A whole JSON error response that closes the connection, for refusals made before
    h11 has a request to answer."""
    body = json.dumps(error_body(status, code, message, "")).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


LINGER_S = 2.0  # how long a closed connection still reads (and drops) what the client sends


class LingeringTransport:
    """The connection's transport, closed by half-closing first. Closing a socket with
    unread input makes the kernel reset it and drop what we wrote but was not yet sent (a
    413 for a body still arriving); instead we send FIN after our bytes and read and drop
    the client's until it closes too, or LINGER_S passes."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self.lingering = False

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        self.lingering = True
        try:
            self._transport.write_eof()
        except (NotImplementedError, OSError, RuntimeError):  # TLS has no half close
            self._transport.close()
            return
        self._loop.call_later(LINGER_S, self._transport.close)

    def peer_closed(self) -> None:
        self._transport.close()

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedH11Protocol(H11Protocol):
    header_timeout_s: float = 10.0
    max_connections: int = 1000
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = LingeringTransport(transport, self.loop)  # type: ignore[assignment]
        if len(self.connections) > self.max_connections:
            self._refuse(503, "too_many_connections", f"this server holds {self.max_connections} connections at "
                         "most; try again shortly")
            return
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        if not self.transport.is_closing():  # once closed, what still comes is dropped
            super().data_received(data)

    def eof_received(self) -> bool | None:
        if isinstance(self.transport, LingeringTransport) and self.transport.lingering:
            self.transport.peer_closed()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_headers()  # the next request on this connection gets the same deadline

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "bad_request", f"malformed HTTP request: {msg}")

    def _await_headers(self) -> None:
        self._stop_header_timer()
        if not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        # Still IDLE: no whole request line and headers yet (a request being answered has
        # moved h11 on, so long answers are never cut).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._refuse(408, "header_timeout", f"the request headers did not arrive within {self.header_timeout_s:g} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._stop_header_timer()
        self.transport.write(raw_error(status, code, message))
        self.transport.close()


def protocol_for(settings: Settings) -> type[GuardedH11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {
        "header_timeout_s": settings.header_timeout_s, "max_connections": settings.max_connections})
