"""Shared fixtures, built once per session: the tiny checkpoint, its loaded model, videos,
a redis-server, a vLLM server, the servers under test."""

from __future__ import annotations

import http.server
import os
import threading

import torch

# Without a GPU the Triton kernels run in the interpreter, before any kernel is compiled.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from models.export_llm import export_llm  # noqa: E402
from models.model import LongVU, load_longvu  # noqa: E402
from models.tiny import write_tiny_checkpoint  # noqa: E402
from server.settings import Settings  # noqa: E402
from tests.harness import RedisClusterServer, RedisServer, ServerThread, TcpRelay, VllmServer  # noqa: E402
from tests.live import HlsServer  # noqa: E402
from tests.videos import write_video  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def model(tiny_checkpoint: Path) -> LongVU:
    return load_longvu(str(tiny_checkpoint))


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def short_video(video_dir: Path) -> Path:
    """12 s of changing 64x48 frames at 2 fps."""
    return write_video(video_dir / "short.mp4", seconds=12, fps=2)


@pytest.fixture(scope="session")
def static_long_video(video_dir: Path) -> Path:
    """150 s of one unchanging frame at 1 fps: enough frames that DINO pruning applies."""
    return write_video(video_dir / "static.mp4", seconds=150, fps=1, width=32, height=32, static=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServer]:
    """A real Redis Cluster: 3 masters with a replica each, on loopback."""
    cluster = RedisClusterServer().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def upload_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the servers under test spool uploads: must be empty between requests."""
    return tmp_path_factory.mktemp("uploads")


def server_settings(checkpoint: Path, redis_url: str | None, upload_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        checkpoint=str(checkpoint), redis_url=redis_url, tmp_dir=upload_dir, device="cpu",
        max_upload_bytes=3 << 20, url_read_timeout_s=1.0, url_connect_timeout_s=1.0, url_total_timeout_s=10.0,
        lease_s=5.0, shutdown_grace_s=2.0,
    )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def app_server(tiny_checkpoint: Path, redis_server: RedisServer, upload_dir: Path) -> Iterator[ServerThread]:
    """The main server under test: real Redis, private URLs refused."""
    server = ServerThread(server_settings(tiny_checkpoint, redis_server.url, upload_dir)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vllm_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A real vLLM (CPU build) serving the tiny checkpoint's exported language model."""
    server = VllmServer(export_llm(str(tiny_checkpoint), tmp_path_factory.mktemp("llm"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vllm_relay(vllm_server: VllmServer) -> Iterator[TcpRelay]:
    """The remote server reaches vLLM through it: the tests see its upstream connections."""
    relay = TcpRelay(vllm_server.port)
    yield relay
    relay.close()


@pytest.fixture(scope="session")
def remote_server(tiny_checkpoint: Path, redis_server: RedisServer, upload_dir: Path,
                  vllm_relay: TcpRelay) -> Iterator[ServerThread]:
    """A server whose answers come from vLLM; it shares the main server's Redis (and so its
    cached videos)."""
    settings = server_settings(tiny_checkpoint, redis_server.url, upload_dir, llm_url=vllm_relay.url,
                               llm_timeout_s=20.0, max_new_tokens=14000)
    server = ServerThread(settings).start()
    yield server
    server.stop()


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/redirect-private"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture(scope="session")
def file_server(video_dir: Path) -> Iterator[str]:
    handler = lambda *a, **kw: _Files(*a, directory=str(video_dir), **kw)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="session")
def url_server(tiny_checkpoint: Path, redis_server, upload_dir: Path) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    """A server that fetches from private addresses (the test file and HLS servers are on
    loopback); it reloads live playlists often and calls a stream gone after 3 s."""
    settings = server_settings(tiny_checkpoint, redis_server.url, upload_dir, url_allow_private=True,
                               stream_poll_s=0.25, stream_gone_s=3.0)
    server = ServerThread(settings).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def hls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HlsServer]:
    """A loopback HTTP server for live HLS streams that the tests write as they run."""
    server = HlsServer(tmp_path_factory.mktemp("hls"))
    yield server
    server.stop()
