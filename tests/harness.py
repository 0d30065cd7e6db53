"""Real services for the tests: a redis-server process and a uvicorn server in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from server.app import create_app
from server.engine import Engine
from server.serve import make_server
from server.services import Services
from server.settings import Settings

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (10000 above it) is free too, neither of them
    `taken` by another node, both below the kernel's ephemeral range (32768 up), so that no
    client connection of the test session can hold one when the node starts."""
    for _ in range(200):
        port = random.randrange(11000, 22700)
        if {port, port + 10000} & taken:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            taken.update((port, port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free pair of ports for a cluster node")


class RedisServer:
    def __init__(self, appendonly: bool = False, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="longvu-redis-"))
        self.appendonly = appendonly  # persistence across a kill, as a production Redis may have
        self.extra_args: list[str] = []
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
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always", "--dir", str(self.dir),
             *self.extra_args],
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


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    """Whether `check` holds within `timeout` seconds (polled every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def wait_until_ok(url: str, process: subprocess.Popen, timeout: float, what: str, interval: float = 0.1) -> None:
    """Until GET `url` answers 200; fails if `process` exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start-up ({process.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise RuntimeError(f"{what} did not start in {timeout} s")


VLLM_PYTHON = Path(os.environ.get("LONGVU_TEST_VLLM_PYTHON", Path(__file__).parents[1] / ".venv-vllm/bin/python"))


class VllmServer:
    """vLLM's CPU build (`make vllm`: its own virtualenv) serving an exported language model
    on loopback, with prompt embeddings on; it can be killed and started again on its port."""

    def __init__(self, model_dir: Path, name: str = "longvu-tiny", max_model_len: int = 16384) -> None:
        self.model_dir, self.name, self.max_model_len = model_dir, name, max_model_len
        self.port = free_port()
        self.log = Path(tempfile.mkdtemp(prefix="longvu-vllm-")) / "vllm.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 300) -> "VllmServer":
        if not VLLM_PYTHON.exists():
            raise RuntimeError(f"no vLLM at {VLLM_PYTHON}: run `make vllm` (or set LONGVU_TEST_VLLM_PYTHON)")
        # vLLM runs on one CPU of its own. Left to all of a 2-vCPU machine, its engine and
        # worker busy-poll both and, at times, nothing else (our server, the tests, vLLM's
        # own API server) runs for 10-25 s (README, the vLLM path).
        cpu = max(os.sched_getaffinity(0))
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_LOGGING_LEVEL="WARNING", VLLM_LOG_STATS_INTERVAL="1",
                   VLLM_CPU_OMP_THREADS_BIND=str(cpu), VLLM_CPU_NUM_OF_RESERVED_CPU="0")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
                 "--served-model-name", self.name, "--dtype", "float32", "--enable-prompt-embeds",
                 "--max-model-len", str(self.max_model_len), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
            )
        try:
            wait_until_ok(f"{self.url}/models", self.process, timeout, "vLLM", interval=0.5)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {self.log.read_text()[-3000:]}") from None
        return self

    def metric(self, name: str) -> float:
        """A vLLM metric summed over its labels: `vllm:num_requests_running`, or the start of
        a labelled line, `vllm:request_success_total{engine="0",finished_reason="abort"`."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        prefixes = (name,) if "{" in name else (name + "{", name + " ")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefixes))

    def kill(self) -> None:
        """kill -9 of the whole process group (vLLM runs its engine in child processes)."""
        if self.process:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
            self.process = None

    def stop(self) -> None:
        if self.process:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
            self.process = None


class TcpRelay:
    """A TCP relay on loopback in front of a port (vLLM's): each completions request that
    passes it gets an event, set once the connection that carried it has closed."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.completions: list[threading.Event] = []
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._relay, args=(client,), name="relay-connection", daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        closed = threading.Event()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:  # nothing listens there (vLLM killed): the client sees its connection close
            client.close()
            return
        upstream.settimeout(None)

        def pump(source: socket.socket, sink: socket.socket, requests: bool) -> None:
            try:
                while data := source.recv(1 << 16):
                    # A request's first read starts with its request line (HTTP/1.1 does not pipeline).
                    if requests and data.startswith(b"POST /v1/completions "):
                        self.completions.append(closed)
                    sink.sendall(data)
            except OSError:
                pass
            for end in (source, sink):  # either side closing closes both
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

        replies = threading.Thread(target=pump, args=(upstream, client, False), daemon=True)
        replies.start()
        pump(client, upstream, True)
        replies.join()
        client.close()
        upstream.close()
        closed.set()


@contextmanager
def gated_rounds(engine: Engine) -> Iterator[threading.Semaphore]:
    """Holds the engine before each of its rounds until the test releases the semaphore:
    a test can then see what a client sees between two tokens."""
    gate = threading.Semaphore(0)
    step = engine._round
    engine._round = lambda: gate.acquire() and step()  # type: ignore[method-assign]
    try:
        yield gate
    finally:
        engine._round = step  # type: ignore[method-assign]
        gate.release(10**6)


class Served:
    """What the tests do with a server, in this process or another."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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


class ServerThread(Served):
    """The real app under a real uvicorn, on a free port, in this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.app = create_app(settings)
        self.server = make_server(self.app, settings, "127.0.0.1", self.port, "warning")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.server.serve(),), daemon=True)

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

    def run_in_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs a coroutine on the server's event loop (where its services live)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)



class RedisClusterServer:
    """A real Redis Cluster on loopback: `masters` masters with one replica each, made by
    `redis-cli --cluster create`, with a short node timeout so that a failover takes
    seconds. Any node's URL reaches the whole cluster."""

    def __init__(self, masters: int = 3, node_timeout_ms: int = 1000) -> None:
        self.taken: set[int] = set()
        self.nodes = [RedisServer(port=free_cluster_port(self.taken)) for _ in range(2 * masters)]
        self.node_timeout_ms = node_timeout_ms

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> "RedisClusterServer":
        try:
            for node in self.nodes:
                # No delay before a replica's first sync (5 s by default): until it has synced, a
                # replica is too stale to be promoted.
                node.extra_args = ["--cluster-enabled", "yes", "--cluster-config-file", str(node.dir / "nodes.conf"),
                                   "--cluster-node-timeout", str(self.node_timeout_ms),
                                   "--repl-diskless-sync-delay", "0"]
                self._start_node(node)
            subprocess.run([_redis_cli(), "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                            "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True, timeout=60)
            self.wait_healthy()
        except BaseException:
            self.stop()  # no node left running behind a failed start
            raise
        return self

    def _start_node(self, node: RedisServer, tries: int = 3) -> None:
        """A port can still be taken between the look and the start: then another one."""
        for attempt in range(tries):
            try:
                node.start()
                return
            except RuntimeError:
                node.stop()
                if attempt == tries - 1:
                    raise
                node.port = free_cluster_port(self.taken)

    def wait_healthy(self, timeout: float = 30) -> None:
        """Every live node sees the cluster ok (every slot has a live master), and every
        live replica has synced with its master (so that it could take over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [n for n in self.nodes if n.process]
            infos = [self.cli(n, "info", "replication") for n in live]
            if all(b"cluster_state:ok" in self.cli(n, "cluster", "info") for n in live) and \
                    all(b"master_link_status:up" in info for info in infos if b"role:slave" in info):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not become healthy")

    def cli(self, node: RedisServer, *args: str) -> bytes:
        return subprocess.run([_redis_cli(), "-p", str(node.port), *args], capture_output=True, timeout=10).stdout

    def master_of(self, key: str) -> RedisServer:
        """The live master that holds the key's slot now."""
        alive = next(n for n in self.nodes if n.process)
        port = self._slot_owner(int(self.cli(alive, "cluster", "keyslot", key).strip()))
        return next(n for n in self.nodes if n.port == port)

    def _slot_owner(self, slot: int) -> int:
        for line in self.cli(next(n for n in self.nodes if n.process), "cluster", "nodes").decode().splitlines():
            fields = line.split()
            if "master" in fields[2] and "fail" not in fields[2]:
                for span in fields[8:]:
                    low, _, high = span.partition("-")
                    if low.isdigit() and int(low) <= slot <= int(high or low):
                        return int(fields[1].split(":")[1].split("@")[0])
        raise LookupError(f"no live master holds slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _redis_cli() -> str:
    exe = shutil.which("redis-cli")
    if exe is None:
        raise RuntimeError("redis-cli is not installed (apt-get install redis-server brings it)")
    return exe


class ServerProcess(Served):
    """`python -m server` in a process of its own, for what only a real process shows: its
    memory, and what SIGTERM does to it."""

    def __init__(self, settings: dict[str, object]) -> None:
        self.port = free_port()
        self.env = {**os.environ, **{f"LONGVU_{k.upper()}": str(v) for k, v in settings.items()}}
        self.process: subprocess.Popen | None = None

    def start(self) -> "ServerProcess":
        self.process = subprocess.Popen([sys.executable, "-m", "server", "--port", str(self.port),
                                         "--log-level", "warning"], env=self.env, cwd=Path(__file__).parents[1])
        wait_until_ok(f"{self.url}/readyz", self.process, 120, "the server")
        return self

    def rss_mb(self) -> float:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024

    def terminate(self) -> float:
        """SIGTERM; returns when it was sent (monotonic)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return time.monotonic()

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
