"""The guarded client's whole-body reads: bounded in size and in total time."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from server.ingest.client import GuardedClient
from server.ingest.errors import FetchTimeout, VideoTooLarge
from server.settings import Settings


@pytest.fixture()
def trickle() -> Iterator[str]:
    """A loopback server that answers 200 and then sends one byte every 0.1 s, for ever."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            while not stop.wait(0.1):
                try:
                    conn.sendall(b"#")
                except OSError:
                    return

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/live.m3u8"
    stop.set()
    listener.close()


def read(url: str, limit: int, **settings: object) -> bytes:
    async def run() -> bytes:
        async with GuardedClient(Settings(url_allow_private=True, **settings)) as client:  # type: ignore[arg-type]
            return await client.read(url, limit, "the playlist")
    return asyncio.run(run())


def test_a_trickling_server_is_cut_at_the_total_timeout(trickle: str) -> None:
    started = time.monotonic()
    with pytest.raises(FetchTimeout, match="the playlist did not arrive in time"):
        read(trickle, 1 << 20, url_total_timeout_s=1.0, url_read_timeout_s=5.0)
    assert time.monotonic() - started < 3


def test_a_body_over_the_limit_is_refused_while_it_comes(trickle: str) -> None:
    with pytest.raises(VideoTooLarge, match="the playlist is larger than the limit of 5 bytes"):
        read(trickle, 5, url_total_timeout_s=30.0)
