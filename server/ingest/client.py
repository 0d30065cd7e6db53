"""The guarded HTTP client every URL fetch goes through (a video, a live playlist, its
segments): http(s) to allowed hosts only, every redirect hop checked again, every
connection only to an address the policy allows, bounded in time and size, and its
failures as the ingest's own errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urljoin

import httpx

from server.ingest.connect import Resolver, guarded_transport, system_resolver
from server.ingest.errors import (
    FetchFailed,
    FetchTimeout,
    IngestError,
    InvalidUrl,
    UrlNotAllowed,
    VideoTooLarge,
)
from server.settings import Settings


def check_url(url: str, settings: Settings) -> httpx.URL:
    """Refuse what is not an http(s) URL to an allowed host. Addresses are checked when
    connecting (`server.ingest.connect`), on the address actually connected to."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise InvalidUrl(f"not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise UrlNotAllowed("only http and https URLs are fetched")
    if not parsed.host:
        raise UrlNotAllowed("the URL has no host")
    host = parsed.host.rstrip(".").lower()
    if settings.url_allowed_hosts and host not in {h.lower() for h in settings.url_allowed_hosts}:
        raise UrlNotAllowed(f"host {host} is not in the allowed list")
    return parsed


def too_large(limit: int, what: str = "the video") -> VideoTooLarge:
    return VideoTooLarge(f"{what} is larger than the limit of {limit} bytes")


def check_declared(response: httpx.Response, limit: int, what: str = "the video") -> None:
    """Refuse a body whose declared length is over the limit before reading any of it."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit, what)


class GuardedClient:
    """One connection pool; close it with `aclose()` (or use it as an async context)."""

    def __init__(self, settings: Settings, resolve: Resolver = system_resolver) -> None:
        self.settings = settings
        timeout = httpx.Timeout(settings.url_read_timeout_s, connect=settings.url_connect_timeout_s)
        self.client = httpx.AsyncClient(transport=guarded_transport(settings.url_allow_private, resolve),
                                        timeout=timeout, follow_redirects=False, trust_env=False)

    async def __aenter__(self) -> GuardedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.client.aclose()

    @asynccontextmanager
    async def get(self, url: str) -> AsyncIterator[httpx.Response]:
        """The 200 response to GET `url`, its body not read yet, after any redirects."""
        try:
            for _ in range(self.settings.url_max_redirects + 1):
                check_url(url, self.settings)
                async with self.client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise FetchFailed(f"the URL answered HTTP {response.status_code}")
                    yield response
                    return
            raise FetchFailed("too many redirects")
        except IngestError:
            raise
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise FetchTimeout("the URL did not answer in time") from exc
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            raise FetchFailed(f"fetching the URL failed: {type(exc).__name__}") from exc

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST `body` to `url` within LONGVU_URL_TOTAL_TIMEOUT_S; the status it answered
        (a redirect is not followed: the answer is its status). Raises UrlNotAllowed for a
        refused URL or address, FetchTimeout, or httpx's errors."""
        check_url(url, self.settings)
        try:
            async with asyncio.timeout(self.settings.url_total_timeout_s):
                response = await self.client.post(url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise FetchTimeout("the URL did not answer in time") from exc
        return response.status_code

    async def read(self, url: str, limit: int, what: str) -> bytes:
        """The whole body of `url`, at most `limit` bytes (`what` it is names it in errors),
        within LONGVU_URL_TOTAL_TIMEOUT_S: a server that trickles bytes does not hold it."""
        try:
            async with asyncio.timeout(self.settings.url_total_timeout_s), self.get(url) as response:
                check_declared(response, limit, what)
                body = bytearray()
                async for chunk in response.aiter_bytes():  # as they come: the limit holds at once
                    body += chunk
                    if len(body) > limit:
                        raise too_large(limit, what)
                return bytes(body)
        except TimeoutError as exc:
            raise FetchTimeout(f"{what} did not arrive in time") from exc
