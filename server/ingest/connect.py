"""The URL guard at connect time: an httpcore network backend that resolves a host once,
checks every address it got against the address policy, and connects to a checked address.
There is no second resolution to rebind, and TLS still sends the host name (SNI) and
verifies the certificate against it, because httpcore starts TLS over this connection
with the URL's host."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx
from httpcore._backends.auto import AutoBackend

from server.ingest.addresses import refusal
from server.ingest.errors import UrlNotAllowed, UrlUnreachable

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, allow_private: bool, resolve: Resolver = system_resolver,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.allow_private, self.resolve = allow_private, resolve
        self.inner = inner or AutoBackend()

    async def checked_addresses(self, host: str, port: int) -> list[str]:
        try:
            addresses = await self.resolve(host, port)
        except (OSError, ValueError) as exc:
            raise UrlUnreachable(f"cannot resolve {host}") from exc
        for address in addresses or ["<none>"]:
            reason = refusal(address, self.allow_private)
            if reason:
                raise UrlNotAllowed(f"{host} resolves to a refused address: {reason}")
        return addresses

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for address in await self.checked_addresses(host, port):
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.AsyncNetworkStream:
        raise UrlNotAllowed("unix sockets are never fetched from")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_transport(allow_private: bool, resolve: Resolver = system_resolver) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx takes no network backend; its pool does (httpcore's public constructor argument).
    pool = transport._pool
    if not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx/httpcore version hides the network backend; the URL guard needs it")
    pool._network_backend = GuardedBackend(allow_private, resolve)
    return transport
