"""Receiving a video's bytes: a multipart upload or a URL, streamed to a temporary file
while hashing (the SHA-256 is the video id) and counting against the size limit."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from server.errors import ApiError
from server.ingest.addresses import refusal
from server.settings import Settings

Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class Received:
    path: Path
    video_id: str
    size: int


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the video is larger than the limit of {limit} bytes")


class Sink:
    """A temporary file that hashes and counts what is written to it."""

    def __init__(self, tmp_dir: Path | None, limit: int) -> None:
        fd, name = tempfile.mkstemp(prefix="longvu-", suffix=".upload", dir=tmp_dir)
        self.file = os.fdopen(fd, "wb")
        self.path = Path(name)
        self.limit = limit
        self.size = 0
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise too_large(self.limit)
        self.sha.update(data)
        self.file.write(data)

    def finish(self) -> Received:
        self.file.close()
        if self.size == 0:
            self.discard()
            raise ApiError(400, "empty_video", "the video is empty")
        return Received(self.path, self.sha.hexdigest(), self.size)

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


async def receive_upload(request: Request, settings: Settings) -> Received:
    """Stream the `file` part of a multipart body to disk; stop reading past the limit."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ApiError(400, "bad_request", "send multipart/form-data with a `file` part, or JSON {\"url\": ...}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + 64 * 1024:
        raise too_large(settings.max_upload_bytes)

    sink = Sink(settings.tmp_dir, settings.max_upload_bytes)
    state = {"header": b"", "value": b"", "is_file": False, "files": 0}
    failure: list[ApiError] = []

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["is_file"] and not failure:
            try:
                sink.write(data[start:end])
            except ApiError as exc:
                failure.append(exc)

    def on_header_end() -> None:
        if state["header"].lower() == b"content-disposition":
            _, disposition = parse_options_header(state["value"])
            state["is_file"] = disposition.get(b"name") == b"file"
            state["files"] += state["is_file"]
        state["header"], state["value"] = b"", b""

    callbacks = {
        "on_part_begin": lambda: state.update(is_file=False),
        "on_part_data": on_part_data,
        "on_header_field": lambda d, s, e: state.update(header=state["header"] + d[s:e]),
        "on_header_value": lambda d, s, e: state.update(value=state["value"] + d[s:e]),
        "on_header_end": on_header_end,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if failure:
                raise failure[0]
        parser.finalize()
    except ApiError:
        sink.discard()
        raise
    except Exception as exc:
        sink.discard()
        raise ApiError(400, "bad_request", f"malformed multipart body: {exc}") from exc
    if state["files"] != 1:
        sink.discard()
        raise ApiError(400, "bad_request", "the multipart body needs exactly one `file` part")
    return sink.finish()


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


async def check_url(url: str, settings: Settings, resolve: Resolver) -> None:
    """Refuse anything but http(s) to allowed, public (or, by setting, private) hosts."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ApiError(422, "url_not_allowed", "only http and https URLs are fetched")
    if not parts.hostname:
        raise ApiError(422, "url_not_allowed", "the URL has no host")
    host = parts.hostname.rstrip(".").lower()
    if settings.url_allowed_hosts and host not in {h.lower() for h in settings.url_allowed_hosts}:
        raise ApiError(422, "url_not_allowed", f"host {host} is not in the allowed list")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await resolve(host, port)
    except (OSError, ValueError) as exc:
        raise ApiError(422, "url_unreachable", f"cannot resolve {host}") from exc
    for address in addresses or ["<none>"]:
        reason = refusal(address, settings.url_allow_private)
        if reason:
            raise ApiError(422, "url_not_allowed", f"{host} resolves to a refused address: {reason}")


async def fetch_url(url: str, settings: Settings, resolve: Resolver = system_resolver) -> Received:
    """Stream `url` to disk, re-checking the address of every redirect hop."""
    timeout = httpx.Timeout(settings.url_read_timeout_s, connect=settings.url_connect_timeout_s)
    sink = Sink(settings.tmp_dir, settings.max_upload_bytes)
    try:
        async with asyncio.timeout(settings.url_total_timeout_s):
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
                for _ in range(settings.url_max_redirects + 1):
                    await check_url(url, settings, resolve)
                    async with client.stream("GET", url) as response:
                        if response.is_redirect:
                            url = urljoin(url, response.headers.get("location", ""))
                            continue
                        if response.status_code != 200:
                            raise ApiError(422, "url_fetch_failed", f"the URL answered HTTP {response.status_code}")
                        declared = response.headers.get("content-length", "")
                        if declared.isdigit() and int(declared) > settings.max_upload_bytes:
                            raise too_large(settings.max_upload_bytes)
                        async for chunk in response.aiter_bytes(1 << 16):
                            sink.write(chunk)
                        return sink.finish()
                raise ApiError(422, "url_fetch_failed", "too many redirects")
    except ApiError:
        sink.discard()
        raise
    except (TimeoutError, httpx.TimeoutException) as exc:
        sink.discard()
        raise ApiError(422, "url_timeout", "the URL did not answer in time") from exc
    except httpx.HTTPError as exc:
        sink.discard()
        raise ApiError(422, "url_fetch_failed", f"fetching the URL failed: {type(exc).__name__}") from exc


DATA_URL = re.compile(r"^data:(video/[A-Za-z0-9.+-]+);base64,", re.IGNORECASE)


def receive_data_url(url: str, settings: Settings) -> Received:
    """A `data:video/...;base64,` URL to disk. Its size is checked on the encoded text,
    before any decoding. Blocking: call it from a worker thread."""
    head = DATA_URL.match(url)
    if head is None:
        raise ApiError(422, "url_not_allowed", "a data URL must be data:video/<type>;base64,<data>")
    payload = url[head.end():]
    if len(payload) // 4 * 3 > settings.max_upload_bytes + 2:
        raise too_large(settings.max_upload_bytes)
    sink = Sink(settings.tmp_dir, settings.max_upload_bytes)
    try:
        step = 1 << 20  # a multiple of 4: every piece decodes on its own
        for start in range(0, len(payload), step):
            sink.write(base64.b64decode(payload[start : start + step], validate=True))
    except ApiError:
        sink.discard()
        raise
    except ValueError as exc:
        sink.discard()
        raise ApiError(400, "bad_request", "the data URL is not valid base64") from exc
    return sink.finish()
