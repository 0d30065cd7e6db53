"""Real services for the tests: a redis-server process and a uvicorn server in a thread."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from server.app import create_app
from server.connections import uvicorn_config
from server.engine import Engine
from server.services import Services
from server.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, appendonly: bool = False) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="longvu-redis-"))
        self.appendonly = appendonly  # persistence across a kill, as a production Redis may have
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def kill(self) -> None:
        """kill -9: no goodbye to clients, no final save."""
        if self.process:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@contextmanager
def gated_rounds(engine: Engine) -> Iterator[threading.Semaphore]:
    """Holds the engine before each of its rounds until the test releases the semaphore:
    a test can then see what a client sees between two tokens."""
    gate = threading.Semaphore(0)
    step = engine._round
    engine._round = lambda admitted: gate.acquire() and step(admitted)  # type: ignore[method-assign]
    try:
        yield gate
    finally:
        engine._round = step  # type: ignore[method-assign]
        gate.release(10**6)


class ServerThread:
    """The real app under a real uvicorn, on a free port, in this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.app = create_app(settings)
        self.server = uvicorn.Server(uvicorn_config(self.app, settings, "127.0.0.1", self.port, "warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def services(self) -> Services:
        return self.app.state.services

    def start(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200 and self.server.started:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def wait_ready(self, video_id: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                body = client.get(f"/videos/{video_id}").json()
                if body.get("status") in ("ready", "failed"):
                    return body
                time.sleep(0.05)
        raise TimeoutError(f"video {video_id} still processing")
