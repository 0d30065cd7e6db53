"""A bad day: Redis killed (-9) and restarted at each stage of an ingest and an ask, leases
lost or orphaned, deletes during processing, too many jobs, a full temp disk, slow bodies.
Real redis-server (append-only, as production may run it) and real uvicorn."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from tests.conftest import server_settings
from tests.harness import RedisServer, ServerThread, gated_rounds, wait_until
from tests.server.test_ask import ask, metric, sse_events, upload_ready
from tests.videos import write_video


@pytest.fixture()
def aof_redis() -> Iterator[RedisServer]:
    server = RedisServer(appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture()
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


Start = Callable[..., ServerThread]


@pytest.fixture()
def start(tiny_checkpoint: Path) -> Iterator[Start]:
    """Starts servers of a test's own settings; all stop when the test ends."""
    started: list[ServerThread] = []

    def start_server(redis_server: RedisServer, tmp_dir: Path, **settings: object) -> ServerThread:
        started.append(ServerThread(server_settings(tiny_checkpoint, redis_server.url, tmp_dir, **settings)).start())
        return started[-1]

    yield start_server
    for server in started:
        server.stop()


def hold(server: ServerThread) -> threading.Event:
    """Park the model worker on a piece of device work until the event is set."""
    release = threading.Event()
    threading.Thread(target=server.services.engine.run_on_device, args=(release.wait,), daemon=True).start()
    time.sleep(0.2)
    return release


def post(server: ServerThread, video: Path):  # type: ignore[no-untyped-def]
    with server.client() as client:
        return client.post("/videos", files={"file": ("v.mp4", video.read_bytes())})


def test_redis_down_at_upload_then_back(start: Start, aof_redis: RedisServer, spool: Path,
                                        video_dir: Path) -> None:
    server = start(aof_redis, spool)
    video = write_video(video_dir / "fault-a.mp4", seconds=3, fps=2, seed=81)
    aof_redis.kill()
    down = post(server, video)
    assert down.status_code == 503 and down.headers["retry-after"]
    assert down.json()["error"]["code"] == "cache_unavailable"
    assert list(spool.iterdir()) == []
    with server.client() as client:
        assert client.get("/readyz").status_code == 503
    aof_redis.start()
    assert wait_until(lambda: server.client().get("/readyz").status_code == 200, 30)
    assert server.wait_ready(post(server, video).json()["id"])["status"] == "ready"


def test_redis_killed_mid_ingest_and_restarted(start: Start, aof_redis: RedisServer, spool: Path,
                                               video_dir: Path) -> None:
    """Killed while the job runs, back (with its data) before the lease runs out: the job
    finishes; a re-upload meanwhile never sticks in `processing`."""
    server = start(aof_redis, spool)
    video = write_video(video_dir / "fault-b.mp4", seconds=4, fps=2, seed=82)
    release = hold(server)
    video_id = post(server, video).json()["id"]
    aof_redis.kill()
    release.set()
    time.sleep(0.5)
    aof_redis.start()
    status = server.wait_ready(video_id, timeout=30)
    assert status["status"] in ("ready", "failed")
    again = post(server, video)
    assert again.status_code in (200, 202)
    assert server.wait_ready(video_id, timeout=30)["status"] == "ready"
    assert ask(server, video_id, stream=False).status_code == 200


def test_an_orphaned_lease_after_a_redis_restart_is_taken_over(start: Start, aof_redis: RedisServer,
                                                               spool: Path, video_dir: Path) -> None:
    """The reproduction: the lease and a `processing` status survive in Redis, the job that
    held them is gone. A re-upload processes at once."""
    server = start(aof_redis, spool, lease_s=30.0)
    video = write_video(video_dir / "fault-c.mp4", seconds=3, fps=2, seed=83)
    video_id = hashlib.sha256(video.read_bytes()).hexdigest()
    keys = server.services.store.keys  # type: ignore[attr-defined]
    client = redis.Redis.from_url(aof_redis.url)
    client.set(keys.lease(video_id), server.services.jobs.owner, px=30_000)  # ours, but no job runs
    client.set(keys.status(video_id), '{"id": "%s", "status": "processing", "progress": 0.3}' % video_id)
    aof_redis.kill()
    aof_redis.start()
    assert client.get(keys.lease(video_id))  # it survived the restart
    assert wait_until(lambda: server.client().get("/readyz").status_code == 200, 30)
    response = post(server, video)
    assert response.status_code == 202
    assert server.wait_ready(video_id, timeout=30)["status"] == "ready"

    other = write_video(video_dir / "fault-c2.mp4", seconds=3, fps=2, seed=84)
    other_id = hashlib.sha256(other.read_bytes()).hexdigest()
    client.set(keys.lease(other_id), "another-replica", px=5_000)  # missed its renewals: an orphan
    assert server.wait_ready(post(server, other).json()["id"], timeout=30)["status"] == "ready"


def test_a_lost_lease_stops_the_job(start: Start, redis_server: RedisServer, spool: Path,
                                    video_dir: Path) -> None:
    server = start(redis_server, spool, lease_s=1.5)
    video = write_video(video_dir / "fault-d.mp4", seconds=3, fps=2, seed=85)
    release = hold(server)
    video_id = post(server, video).json()["id"]
    keys = server.services.store.keys  # type: ignore[attr-defined]
    client = redis.Redis.from_url(redis_server.url)
    client.set(keys.lease(video_id), "another-replica", px=60_000)  # evicted, then taken by another
    cancelled = metric(server, "longvu_videos_encoded_total")
    time.sleep(1.0)  # the next renewal finds the lease gone
    release.set()
    assert wait_until(lambda: not server.services.jobs.jobs, 30)
    assert metric(server, "longvu_videos_encoded_total") == cancelled + 1
    assert not client.exists(keys.tokens(video_id))  # the lost job wrote nothing
    assert client.get(keys.lease(video_id)) == b"another-replica"  # nor released the other's lease
    assert list(spool.iterdir()) == []


def test_delete_during_processing_cancels_and_nothing_comes_back(
        start: Start, redis_server: RedisServer, spool: Path, video_dir: Path) -> None:
    server = start(redis_server, spool)
    video = write_video(video_dir / "fault-e.mp4", seconds=3, fps=2, seed=86)
    release = hold(server)
    video_id = post(server, video).json()["id"]
    with server.client() as client:
        assert client.delete(f"/videos/{video_id}").status_code == 204
        release.set()
        assert wait_until(lambda: not server.services.jobs.jobs, 30)
        time.sleep(0.3)
        assert client.get(f"/videos/{video_id}").status_code == 404
    keys = server.services.store.keys  # type: ignore[attr-defined]
    assert not redis.Redis.from_url(redis_server.url).exists(keys.tokens(video_id), keys.status(video_id))
    assert list(spool.iterdir()) == []


def status_events(server: ServerThread, video_id: str) -> Iterator[str]:
    with server.client() as http, http.stream("GET", f"/videos/{video_id}/events") as events:
        yield from (line for line in events.iter_lines() if line.startswith("data:"))


def test_a_delete_during_ingest_sticks(start: Start, redis_server: RedisServer, spool: Path,
                                      video_dir: Path) -> None:
    """Progress keeps changing while the job waits for the device (the decoder reads ahead), so
    its keep-alive writes the status often: none of those writes may bring the video back."""
    server = start(redis_server, spool)
    keys = server.services.store.keys  # type: ignore[attr-defined]
    client = redis.Redis.from_url(redis_server.url)
    for trial in range(6):
        video = write_video(video_dir / f"fault-delete-{trial}.mp4", seconds=8, fps=4, seed=300 + trial)
        release = hold(server)
        video_id = post(server, video).json()["id"]
        heard: list[str] = []
        subscribed = threading.Event()

        def listen() -> None:
            for line in status_events(server, video_id):
                heard.append(line)
                subscribed.set()

        subscriber = threading.Thread(target=listen, daemon=True)
        subscriber.start()
        try:
            with server.client() as http:
                assert subscribed.wait(10)  # it has the current status: it follows the video
                time.sleep(0.1 * trial)  # at different points of the keep-alive's cycle
                assert http.delete(f"/videos/{video_id}").status_code == 204
                subscriber.join(5)
                assert heard and '"error_code":"deleted"' in heard[-1], heard[-3:]  # never `job_lost`
                deadline = time.monotonic() + 1.5  # three keep-alive periods
                while time.monotonic() < deadline:
                    assert http.get(f"/videos/{video_id}").status_code == 404
                    assert not client.exists(keys.status(video_id), keys.tokens(video_id), keys.lease(video_id))
                    time.sleep(0.05)
                assert http.get(f"/videos/{video_id}/events").status_code == 404
        finally:
            release.set()
        assert wait_until(lambda: not server.services.jobs.jobs, 30)
        with server.client() as http:
            assert http.get(f"/videos/{video_id}").status_code == 404
    assert list(spool.iterdir()) == []


def test_jobs_and_spooled_bytes_are_bounded(start: Start, redis_server: RedisServer, spool: Path,
                                            video_dir: Path) -> None:
    server = start(redis_server, spool, max_jobs=1)
    release = hold(server)
    first = post(server, write_video(video_dir / "fault-f1.mp4", seconds=3, fps=2, seed=87))
    assert first.status_code == 202
    refused = post(server, write_video(video_dir / "fault-f2.mp4", seconds=3, fps=2, seed=88))
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert refused.json()["error"]["code"] == "busy"
    assert len(list(spool.iterdir())) == 1  # only the running job's file
    release.set()
    assert server.wait_ready(first.json()["id"])["status"] == "ready"
    assert list(spool.iterdir()) == []
    small = start(redis_server, spool, max_spool_bytes=20_000)
    big = post(small, write_video(video_dir / "fault-g.mp4", seconds=6, fps=4, width=96, height=64, seed=89))
    assert big.status_code == 503 and big.json()["error"]["code"] == "spool_full" and big.headers["retry-after"]
    assert list(spool.iterdir()) == []


@pytest.fixture()
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs as the temp dir."""
    mount = tmp_path / "tiny-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_temp_disk_is_a_clean_503(full_disk: Path, start: Start,
                                         redis_server: RedisServer, video_dir: Path) -> None:
    # full_disk first: the server stops before the disk is unmounted.
    server = start(redis_server, full_disk)
    with server.client() as client:
        response = client.post("/videos", files={"file": ("v.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(600_000))})
        assert response.status_code == 503 and response.json()["error"]["code"] == "disk_full"
        assert response.headers["retry-after"]
        assert list(full_disk.iterdir()) == []
        assert client.get("/readyz").status_code == 200
    small = write_video(video_dir / "fault-h.mp4", seconds=2, fps=2, seed=90)
    assert server.wait_ready(post(server, small).json()["id"])["status"] == "ready"


def test_a_body_that_stalls_times_out(start: Start, redis_server: RedisServer, spool: Path) -> None:
    server = start(redis_server, spool, body_read_timeout_s=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /videos HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=X\r\n"
                     b"content-length: 100000\r\n\r\n--X\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 408") and b"body_timeout" in data
    assert list(spool.iterdir()) == []


def test_a_stream_outlives_the_body_read_timeout(start: Start, redis_server: RedisServer, spool: Path,
                                                 video_dir: Path) -> None:
    """The body read timeout bounds the wait for a request's body, not a streamed answer
    that goes on after it (nor a client that would leave meanwhile)."""
    server = start(redis_server, spool, body_read_timeout_s=0.3)
    video_id = upload_ready(server, write_video(video_dir / "fault-l.mp4", seconds=2, fps=2, seed=93))
    body = {"question": "Go on.", "max_new_tokens": 6, "ignore_eos": True}
    with gated_rounds(server.services.engine) as gate, server.client() as client:
        with client.stream("POST", f"/videos/{video_id}/ask", json=body) as response:
            assert response.status_code == 200
            time.sleep(1.0)  # the answer held for over three timeouts, its stream open
            gate.release(100)
            events = list(sse_events(response))
    assert {kind for kind, _ in events[:-1]} == {"token"} and events[-1][0] == "done"
    assert events[-1][1]["usage"]["completion_tokens"] == 6


def test_redis_killed_during_an_answer(start: Start, aof_redis: RedisServer, spool: Path,
                                       video_dir: Path) -> None:
    server = start(aof_redis, spool)
    video_id = upload_ready(server, write_video(video_dir / "fault-i.mp4", seconds=3, fps=2, seed=91))
    engine = server.services.engine
    result: list = []
    with gated_rounds(engine) as gate:
        worker = threading.Thread(target=lambda: result.append(
            ask(server, video_id, stream=False, max_new_tokens=20, ignore_eos=True)))
        worker.start()
        gate.release(3)
        assert wait_until(lambda: engine.running == 1, 30)
        aof_redis.kill()  # mid-answer: the tokens are in memory, the answer goes on
    worker.join(30)
    assert result[0].status_code == 200 and result[0].json()["usage"]["completion_tokens"] == 20
    down = ask(server, video_id, stream=False)
    assert down.status_code == 503 and down.json()["error"]["code"] == "cache_unavailable"
    aof_redis.start()
    assert wait_until(lambda: server.client().get("/readyz").status_code == 200, 30)
    assert ask(server, video_id, stream=False).status_code == 200


def test_cold_loads_are_single_flight(app_server: ServerThread, video_dir: Path) -> None:
    video_id = upload_ready(app_server, write_video(video_dir / "fault-j.mp4", seconds=3, fps=2, seed=92))
    svc = app_server.services
    svc.hot.discard(video_id)
    reads: list[str] = []
    original = svc.store.get_tokens

    async def counted(vid: str) -> bytes | None:
        reads.append(vid)
        await asyncio.sleep(0.3)  # a slow read, so the questions overlap
        return await original(vid)

    svc.store.get_tokens = counted  # type: ignore[method-assign]
    try:
        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(lambda _: ask(app_server, video_id, stream=False).status_code, range(5)))
    finally:
        svc.store.get_tokens = original  # type: ignore[method-assign]
    assert answers == [200] * 5 and reads == [video_id]
