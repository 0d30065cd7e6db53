"""Receiving a video's bytes: a multipart upload or a URL, streamed to a temporary file
while hashing (the SHA-256 is the video id) and counting against the size limit."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from server.ingest.client import GuardedClient, check_declared, check_url, too_large
from server.ingest.connect import Resolver, system_resolver
from server.ingest.errors import (
    DiskFull,
    EmptyVideo,
    FetchTimeout,
    IngestError,
    MalformedUpload,
    SpoolFull,
    UrlNotAllowed,
)
from server.settings import Settings


@dataclass(frozen=True)
class Received:
    path: Path
    video_id: str
    size: int


BATCH = 1 << 20  # bytes gathered on the event loop before a worker thread writes them
HEADER_LIMIT = 8 * 1024  # one multipart part header, name or value


def spool_full() -> SpoolFull:
    return SpoolFull("the server holds too many uploads on disk; try again shortly")


def disk_full() -> DiskFull:
    return DiskFull("the server is out of temporary disk space; try again later")


def spooled_bytes(tmp_dir: Path | None) -> int:
    """Bytes of uploads on disk now (received, or waiting for their job)."""
    total = 0
    for path in Path(tmp_dir or tempfile.gettempdir()).glob("longvu-*.upload"):
        try:
            total += path.stat().st_size
        except OSError:
            pass  # removed meanwhile
    return total


async def batched(chunks: AsyncIterator[bytes], used: Callable[[], int], limit: int,
                  envelope: int = 0) -> AsyncIterator[bytes]:
    """Chunks gathered into blocks of at least BATCH bytes (the last may be smaller), for a
    worker thread to handle; too large as soon as `used()` and what is gathered pass
    `limit` (plus `envelope`, the bytes around the video a body may carry)."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        if used() + len(buffer) > limit + envelope:
            raise too_large(limit)
        if len(buffer) >= BATCH:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


class Sink:
    """A temporary file that hashes and counts what is written to it, within the size
    limit of one video and the spool budget of all uploads on disk."""

    def __init__(self, settings: Settings) -> None:
        self.limit = settings.max_upload_bytes
        self.room = settings.max_spool_bytes - spooled_bytes(settings.tmp_dir)
        if self.room <= 0:
            raise spool_full()
        try:
            fd, name = tempfile.mkstemp(prefix="longvu-", suffix=".upload", dir=settings.tmp_dir)
        except OSError as exc:
            raise disk_full() from exc
        self.file = os.fdopen(fd, "wb")
        self.path = Path(name)
        self.size = 0
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> None:
        """Blocking (hashing and disk): call it from a worker thread."""
        self.size += len(data)
        if self.size > self.limit:
            raise too_large(self.limit)
        if self.size > self.room:
            raise spool_full()
        self.sha.update(data)
        try:
            self.file.write(data)
        except OSError as exc:
            raise disk_full() from exc

    async def write_stream(self, chunks: AsyncIterator[bytes]) -> None:
        """Gathers chunks on the event loop, writes them from a worker thread."""
        async for block in batched(chunks, lambda: self.size, self.limit):
            await run_in_threadpool(self.write, block)

    def finish(self) -> Received:
        try:
            self.file.close()
        except OSError as exc:
            self.discard()
            raise disk_full() from exc
        if self.size == 0:
            self.discard()
            raise EmptyVideo("the video is empty")
        return Received(self.path, self.sha.hexdigest(), self.size)

    def discard(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass  # a full disk; the file goes anyway
        self.path.unlink(missing_ok=True)


async def receive_upload(request: Request, settings: Settings) -> Received:
    """Stream the `file` part of a multipart body to disk; stop reading past the limit."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise MalformedUpload("send multipart/form-data with a `file` part, or JSON {\"url\": ...}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + 64 * 1024:
        raise too_large(settings.max_upload_bytes)

    sink = Sink(settings)
    state = {"header": b"", "value": b"", "is_file": False, "files": 0}
    failure: list[IngestError] = []

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["is_file"] and not failure:
            try:
                sink.write(data[start:end])
            except IngestError as exc:
                failure.append(exc)

    def on_header_end() -> None:
        if state["header"].lower() == b"content-disposition":
            _, disposition = parse_options_header(state["value"])
            state["is_file"] = disposition.get(b"name") == b"file"
            state["files"] += state["is_file"]
        state["header"], state["value"] = b"", b""

    def header_bytes(key: str) -> Callable[[bytes, int, int], None]:
        def add(data: bytes, start: int, end: int) -> None:
            if len(state[key]) + end - start > HEADER_LIMIT:
                if not failure:
                    failure.append(MalformedUpload("a multipart header is too long"))
                return
            state[key] += data[start:end]
        return add

    callbacks = {
        "on_part_begin": lambda: state.update(is_file=False),
        "on_part_data": on_part_data,
        "on_header_field": header_bytes("header"),
        "on_header_value": header_bytes("value"),
        "on_header_end": on_header_end,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]

    async def parse(data: bytes) -> None:
        await run_in_threadpool(parser.write, data)  # parsing, hashing, writing: off the event loop
        if failure:
            raise failure[0]

    try:
        async for block in batched(request.stream(), lambda: sink.size, settings.max_upload_bytes, 64 * 1024):
            await parse(block)
        parser.finalize()
    except IngestError:
        sink.discard()
        raise
    except ValueError as exc:  # the multipart parser's errors
        sink.discard()
        raise MalformedUpload(f"malformed multipart body: {exc}") from exc
    except BaseException:  # the client left, or the HTTP layer gave up on the body
        sink.discard()
        raise
    if state["files"] != 1:
        sink.discard()
        raise MalformedUpload("the multipart body needs exactly one `file` part")
    return sink.finish()


async def fetch_url(url: str, settings: Settings, resolve: Resolver = system_resolver) -> Received:
    """Stream `url` to disk through the guarded client (`server.ingest.client`)."""
    check_url(url, settings)
    sink = Sink(settings)
    try:
        async with asyncio.timeout(settings.url_total_timeout_s), GuardedClient(settings, resolve) as client:
            async with client.get(url) as response:
                check_declared(response, settings.max_upload_bytes)
                await sink.write_stream(response.aiter_bytes(1 << 16))
                return sink.finish()
    except TimeoutError as exc:
        sink.discard()
        raise FetchTimeout("the URL did not answer in time") from exc
    except BaseException:
        sink.discard()
        raise


DATA_URL = re.compile(r"^data:(video/[A-Za-z0-9.+-]+);base64,", re.IGNORECASE)


def receive_data_url(url: str, settings: Settings) -> Received:
    """A `data:video/...;base64,` URL to disk. Its size is checked on the encoded text,
    before any decoding. Blocking: call it from a worker thread."""
    head = DATA_URL.match(url)
    if head is None:
        raise UrlNotAllowed("a data URL must be data:video/<type>;base64,<data>")
    payload = url[head.end():]
    if len(payload) // 4 * 3 > settings.max_upload_bytes + 2:
        raise too_large(settings.max_upload_bytes)
    sink = Sink(settings)
    try:
        step = 1 << 20  # a multiple of 4: every piece decodes on its own
        for start in range(0, len(payload), step):
            sink.write(base64.b64decode(payload[start : start + step], validate=True))
    except IngestError:
        sink.discard()
        raise
    except ValueError as exc:
        sink.discard()
        raise MalformedUpload("the data URL is not valid base64") from exc
    return sink.finish()
