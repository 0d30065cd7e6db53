"""Every question ends, and SIGTERM stops the server cleanly: abandoned answers, a drain that
refuses new work, answers cut at the grace period, ingest jobs that give their lease back.
Real uvicorn; SIGTERM to a real `python -m server` process."""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import server_settings
from tests.harness import RedisServer, ServerProcess, ServerThread, wait_until
from tests.server.test_ask import metric, sse_events, upload_ready
from tests.videos import write_video

LONG = {"max_new_tokens": 3000, "ignore_eos": True}
# uvicorn, once shut down gracefully, raises the signal again: a SIGTERM'd server exits as such.
CLEAN_EXIT = (0, -signal.SIGTERM)


def process_settings(checkpoint: Path, tmp_dir: Path, **overrides: object) -> dict[str, object]:
    return {"checkpoint": checkpoint, "device": "cpu", "tmp_dir": tmp_dir, "max_upload_bytes": 3 << 20,
            "lease_s": 5, **overrides}


@pytest.fixture()
def process_server(tiny_checkpoint: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(process_settings(tiny_checkpoint, tmp_path, shutdown_grace_s=3)).start()
    yield server
    server.stop()


def abandon(server: ServerProcess | ServerThread, request: tuple[str, dict]) -> None:
    """A non-streamed question whose client gives up after half a second."""
    path, body = request
    try:
        httpx.post(server.url + path, json=body, timeout=0.5)
    except httpx.TimeoutException:
        return
    raise AssertionError("the answer came before the client gave up: make it longer")


def asks_open(server: ServerProcess | ServerThread) -> float:
    return metric(server, "longvu_asks_open")  # type: ignore[arg-type]


def test_abandoned_non_streamed_asks_all_end(process_server: ServerProcess, video_dir: Path) -> None:
    """Native and OpenAI, 100 of them: no task, no ranged copy, no inputs_embeds left behind,
    and SIGTERM afterwards is quick."""
    video_id = upload_ready(process_server, write_video(video_dir / "abandon.mp4", seconds=6, fps=2,  # type: ignore[arg-type]
                                                        seed=601))
    with process_server.client() as client:
        model = client.get("/v1/models").json()["data"][0]["id"]
    native = (f"/videos/{video_id}/ask", {"question": "Go on.", "stream": False, **LONG})
    chat = ("/v1/chat/completions", {"model": model, "max_tokens": 3000, "ignore_eos": True, "messages": [
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": f"longvu://{video_id}"}},
                                     {"type": "text", "text": "Go on."}]}]})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda r: abandon(process_server, r), [native, chat] * 8))  # allocator warm-up
        assert wait_until(lambda: asks_open(process_server) == 0, 20)
        rss_before = process_server.rss_mb()
        list(pool.map(lambda r: abandon(process_server, r), [native, chat] * 50))
    assert wait_until(lambda: asks_open(process_server) == 0, 20), asks_open(process_server)
    grown = process_server.rss_mb() - rss_before
    assert grown < 60, f"RSS grew {grown:.0f} MB over 100 abandoned asks"
    sent = process_server.terminate()
    assert process_server.wait(10) in CLEAN_EXIT
    assert time.monotonic() - sent < 10


def test_sigterm_ends_a_long_answer_within_the_grace(process_server: ServerProcess, video_dir: Path) -> None:
    video_id = upload_ready(process_server, write_video(video_dir / "sigterm.mp4", seconds=4, fps=2,  # type: ignore[arg-type]
                                                        seed=602))
    events: list[tuple[str, dict]] = []
    first_token = threading.Event()

    def listen() -> None:
        with httpx.stream("POST", f"{process_server.url}/videos/{video_id}/ask", timeout=60,
                          json={"question": "Go on and on.", "max_new_tokens": 4000, "ignore_eos": True}) as response:
            for event in sse_events(response):
                events.append(event)
                first_token.set()

    listener = threading.Thread(target=listen)
    listener.start()
    assert first_token.wait(30)
    sent = process_server.terminate()
    listener.join(20)
    assert not listener.is_alive()
    kind, payload = events[-1]
    assert kind == "done" or (kind == "error" and payload["code"] == "shutting_down"), events[-1]
    assert process_server.wait(20) in CLEAN_EXIT
    assert time.monotonic() - sent < 3 + 5  # the grace, and a little for the last events


def test_sigterm_mid_ingest_gives_the_lease_back(tiny_checkpoint: Path, tmp_path: Path, redis_server: RedisServer,
                                                 upload_dir: Path, video_dir: Path) -> None:
    """The job stops and releases its lease: a second server on the same Redis takes the
    video at once, without waiting for the lease to expire."""
    first = ServerProcess(process_settings(tiny_checkpoint, tmp_path, redis_url=redis_server.url, lease_s=60)).start()
    video = write_video(video_dir / "sigterm-ingest.mp4", seconds=90, fps=4, seed=603)
    video_id = hashlib.sha256(video.read_bytes()).hexdigest()
    try:
        with first.client() as client:
            assert client.post("/videos", files={"file": ("v.mp4", video.read_bytes())}).status_code == 202
            assert client.get(f"/videos/{video_id}").json()["status"] == "processing"
        first.terminate()
        assert first.wait(20) in CLEAN_EXIT
    finally:
        first.stop()
    second = ServerThread(server_settings(tiny_checkpoint, redis_server.url, upload_dir, lease_s=60)).start()
    try:
        lease = second.services.store.keys.lease(video_id)  # type: ignore[attr-defined]
        assert not redis.Redis.from_url(redis_server.url).exists(lease)
        with second.client() as client:
            again = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())})
        assert again.status_code == 202
        assert second.services.jobs.jobs  # this server's job, not a wait on a stale lease
        final = second.wait_ready(video_id, timeout=120)
        assert final["status"] == "ready", final
    finally:
        second.stop()
    assert list(tmp_path.glob("*.upload")) == []


def test_a_draining_server_refuses_new_work_and_says_so(tiny_checkpoint: Path, upload_dir: Path,
                                                        video_dir: Path) -> None:
    server = ServerThread(server_settings(tiny_checkpoint, None, upload_dir)).start()
    try:
        video_id = upload_ready(server, write_video(video_dir / "drain.mp4", seconds=3, fps=2, seed=604))
        with server.client() as client, client.stream("GET", f"/videos/{video_id}/events") as ready_events:
            assert [e for e in ready_events.iter_lines() if e.startswith("event:")] == ["event: ready"]
            server.run_in_loop(server.services.drain())
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["error"]["code"] == "shutting_down"
            for path, kwargs in ((f"/videos/{video_id}/ask", {"json": {"question": "q"}}),
                                 ("/videos", {"files": {"file": ("v.mp4", b"abc")}}),
                                 ("/v1/chat/completions", {"json": {"model": "x", "messages": []}})):
                refused = client.post(path, **kwargs)
                assert refused.status_code == 503 and refused.headers["retry-after"], path
                assert json.dumps(refused.json()).count("shutting_down") == 1, refused.text
            assert client.get(f"/videos/{video_id}").json()["status"] == "ready"  # reads go on
        assert list(upload_dir.iterdir()) == []
    finally:
        server.stop()
