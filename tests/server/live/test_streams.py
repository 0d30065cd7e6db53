"""Live HLS streams through the real server: a stream the test writes while it runs
(one 4-second segment every half second), followed, asked about, retained, ended,
failed and deleted."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from server.settings import Settings
from tests.conftest import server_settings
from tests.harness import RedisServer, ServerProcess, ServerThread
from tests.live import HlsServer


def wait_for(client: httpx.Client, stream_id: str, done: Callable[[dict], bool], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/videos/{stream_id}").json()
        if done(status):
            return status
        time.sleep(0.1)
    raise TimeoutError(f"stream {stream_id[:12]}: {status}")


def ask(client: httpx.Client, stream_id: str, **body: object) -> dict:
    response = client.post(f"/videos/{stream_id}/ask", json={"question": "What happens?", "max_new_tokens": 2,
                                                             "stream": False, **body})
    assert response.status_code == 200, response.text
    return response.json()


def follow(client: httpx.Client, url: str, **body: object) -> dict:
    response = client.post("/streams", json={"url": url, **body})
    assert response.status_code == 202, response.text
    return response.json()


def test_a_stream_goes_live_and_later_asks_see_later_seconds(url_server: ServerThread, hls_server: HlsServer) -> None:
    writer, url = hls_server.stream()
    try:
        with url_server.client() as client:
            status = follow(client, url)
            stream_id = status["id"]
            assert len(stream_id) == 64 and int(stream_id, 16) >= 0
            assert status["status"] == "live" and status["kind"] == "stream"
            assert not {"stream_url", "windows", "resume"} & set(status)  # internal: kept in the store only
            live = wait_for(client, stream_id, lambda s: s["frames_cached"] >= 16)
            assert live["status"] == "live" and live["seconds_live"] >= 16 and live["lag_s"] >= 0
            first = ask(client, stream_id)["compression"]["seconds"]
            assert first and max(first) < live["seconds_live"] + 1e-6
            later = wait_for(client, stream_id, lambda s: s["frames_cached"] >= 48)
            second = ask(client, stream_id)["compression"]["seconds"]
            assert max(second) > max(first) + 15  # windows encoded since the first ask
            held = url_server.run_in_loop(url_server.services.store.get_status(stream_id))["windows"]
            hot = url_server.services.hot  # windows never change: decoded once, kept by name
            assert len(held) >= 3 and all(hot.get(f"{stream_id}/{w[0]}") is not None for w in held)
            recent = ask(client, stream_id, last_s=10)["compression"]["seconds"]
            edge = client.get(f"/videos/{stream_id}").json()["seconds_live"]
            assert recent and min(recent) >= later["seconds_live"] - 10 - 1e-6 and max(recent) <= edge
            assert len(recent) < len(second)
            metrics = client.get("/metrics").text
            assert "longvu_streams_live 1.0" in metrics and "longvu_stream_lag_seconds " in metrics
            client.delete(f"/videos/{stream_id}")
    finally:
        writer.stop()


def test_retention_drops_old_frames(url_server: ServerThread, hls_server: HlsServer) -> None:
    writer, url = hls_server.stream()
    try:
        with url_server.client() as client:
            stream_id = follow(client, url, retention_s=20)["id"]
            status = wait_for(client, stream_id, lambda s: s["seconds_live"] >= 72 and s["frames_cached"] >= 16)
            seconds = ask(client, stream_id)["compression"]["seconds"]
            # Whole windows leave: what stays starts within a window (16 s) of the retention.
            assert min(seconds) >= status["seconds_live"] - 20 - 16
            assert status["frames_cached"] <= 20 + 2 * 16
            client.delete(f"/videos/{stream_id}")
    finally:
        writer.stop()


def test_endlist_makes_it_ready(url_server: ServerThread, hls_server: HlsServer) -> None:
    writer, url = hls_server.stream(fmp4=True)
    with url_server.client() as client:
        stream_id = follow(client, url)["id"]
        wait_for(client, stream_id, lambda s: s["seconds_live"] >= 20)
        writer.end()
        ready = wait_for(client, stream_id, lambda s: s["status"] != "live")
        assert ready["status"] == "ready" and ready["lag_s"] == 0
        assert ready["duration_s"] == ready["seconds_live"] == writer.written * writer.segment_s
        seconds = ask(client, stream_id)["compression"]["seconds"]
        assert max(seconds) == ready["seconds_live"] - 1  # the partial last window was encoded too
        client.delete(f"/videos/{stream_id}")


def test_a_removed_playlist_fails_with_a_reason(url_server: ServerThread, hls_server: HlsServer) -> None:
    writer, url = hls_server.stream()
    with url_server.client() as client:
        stream_id = follow(client, url)["id"]
        wait_for(client, stream_id, lambda s: s["seconds_live"] >= 8)
        writer.remove()
        failed = wait_for(client, stream_id, lambda s: s["status"] != "live", timeout=30)
        assert failed["status"] == "failed" and failed["error_code"] == "stream_gone"
        assert "404" in failed["error"]
        assert "longvu_streams_live 0.0" in client.get("/metrics").text


def test_delete_stops_the_fetching(url_server: ServerThread, hls_server: HlsServer) -> None:
    writer, url = hls_server.stream()
    folder = url.split("/")[3]
    try:
        with url_server.client() as client:
            stream_id = follow(client, url)["id"]
            wait_for(client, stream_id, lambda s: s["seconds_live"] >= 8)
            assert client.delete(f"/videos/{stream_id}").status_code == 204
            time.sleep(0.5)  # a fetch already under way may finish
            before = hls_server.requests[folder]
            time.sleep(2)
            assert hls_server.requests[folder] == before
            assert client.get(f"/videos/{stream_id}").status_code == 404
    finally:
        writer.stop()


def test_progress_events_while_live(url_server: ServerThread, hls_server: HlsServer) -> None:
    writer, url = hls_server.stream()
    try:
        with url_server.client() as client:
            stream_id = follow(client, url)["id"]
            seen: list[float] = []
            with client.stream("GET", f"/videos/{stream_id}/events") as events:
                for line in events.iter_lines():
                    if line.startswith("event:"):
                        assert line == "event: progress"
                    if line.startswith("data:") and '"seconds_live"' in line:
                        seen.append(httpx.Response(200, content=line[5:]).json()["seconds_live"])
                        if len(seen) >= 3 and seen[-1] > seen[0]:
                            break
            assert seen[-1] > seen[0]
            client.delete(f"/videos/{stream_id}")
    finally:
        writer.stop()


def test_the_openai_endpoint_takes_a_stream(url_server: ServerThread, hls_server: HlsServer) -> None:
    writer, url = hls_server.stream()
    try:
        with url_server.client() as client:
            stream_id = follow(client, url)["id"]
            wait_for(client, stream_id, lambda s: s["frames_cached"] >= 16)
            response = client.post("/v1/chat/completions", json={
                "model": client.get("/v1/models").json()["data"][0]["id"], "max_tokens": 2, "last_s": 30,
                "messages": [{"role": "user", "content": [
                    {"type": "video_url", "video_url": {"url": f"longvu://{stream_id}"}},
                    {"type": "text", "text": "What happened?"}]}]})
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["finish_reason"] == "length"
            client.delete(f"/videos/{stream_id}")
    finally:
        writer.stop()


def test_a_private_playlist_url_is_refused(app_server: ServerThread, hls_server: HlsServer) -> None:
    """The main server refuses private addresses: a loopback playlist is refused at once."""
    writer, url = hls_server.stream()
    writer.stop()
    with app_server.client() as client:
        response = client.post("/streams", json={"url": url})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "url_not_allowed" and error["param"] == "url" and "private" in error["message"]


@pytest.mark.parametrize("url", ["rtsp://camera.example/stream", "rtmp://127.0.0.1/live", "srt://10.0.0.1:9000",
                                 "ftp://example.com/live.m3u8"])
def test_other_schemes_need_an_allowed_host(app_server: ServerThread, url: str) -> None:
    with app_server.client() as client:
        response = client.post("/streams", json={"url": url})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "url_not_allowed" and response.json()["error"]["param"] == "url"


def test_bad_stream_requests(url_server: ServerThread, file_server: str, short_video: Path) -> None:
    with url_server.client() as client:
        not_a_playlist = client.post("/streams", json={"url": f"{file_server}/{short_video.name}"})
        assert not_a_playlist.status_code == 422 and not_a_playlist.json()["error"]["code"] == "bad_playlist"
        too_long = client.post("/streams", json={"url": "http://x.example/a.m3u8", "retention_s": 1e9})
        assert too_long.status_code == 422 and too_long.json()["error"]["param"] == "retention_s"
        missing = client.post("/streams", json={"retention_s": 10})
        assert missing.status_code == 422 and "url" in missing.text
        assert client.get("/healthz").status_code == 200


def test_beyond_the_stream_limit_is_503(tiny_checkpoint: Path, redis_server, upload_dir: Path,  # type: ignore[no-untyped-def]
                                        hls_server: HlsServer) -> None:
    settings: Settings = server_settings(tiny_checkpoint, redis_server.url, upload_dir, url_allow_private=True,
                                         max_streams_live=0)
    server = ServerThread(settings).start()
    try:
        with server.client() as client:
            response = client.post("/streams", json={"url": hls_server.url("none")})
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert response.json()["error"]["code"] == "busy"
    finally:
        server.stop()


def two_replicas(checkpoint: Path, tmp_path: Path, upload_dir: Path,
                 redis_url: str) -> tuple[ServerProcess, ServerThread]:
    """A `python -m server` to kill (a 3 s lease) and a replica beside it on the same Redis,
    both following loopback streams."""
    first = ServerProcess({"checkpoint": checkpoint, "device": "cpu", "tmp_dir": tmp_path, "lease_s": 3,
                           "redis_url": redis_url, "url_allow_private": True, "stream_poll_s": 0.25}).start()
    second = ServerThread(server_settings(checkpoint, redis_url, upload_dir, url_allow_private=True,
                                          stream_poll_s=0.25)).start()
    return first, second


def test_another_replica_takes_a_stream_over(tiny_checkpoint: Path, tmp_path: Path, upload_dir: Path,
                                             hls_server: HlsServer) -> None:
    """The follower's process is killed (SIGKILL: no goodbye); its lease expires and the
    other replica on the same Redis goes on with the stream at the live edge. A Redis of
    their own: the session's other servers refuse loopback playlists and would take the
    stream over too."""
    redis_server = RedisServer().start()
    first, second = two_replicas(tiny_checkpoint, tmp_path, upload_dir, redis_server.url)
    writer, url = hls_server.stream()
    try:
        with first.client() as client:
            stream_id = follow(client, url)["id"]
            before = wait_for(client, stream_id, lambda s: s["frames_cached"] >= 16)
        first.stop()  # SIGKILL
        with second.client() as client:
            after = wait_for(client, stream_id, lambda s: s["frames_sampled"] >= before["frames_sampled"] + 16)
            assert after["status"] == "live" and stream_id in second.services.streams.followed
            seconds = ask(client, stream_id)["compression"]["seconds"]
            assert min(seconds) < before["seconds_live"] < max(seconds)  # windows of both followers
            assert client.delete(f"/videos/{stream_id}").status_code == 204
    finally:
        first.stop()
        second.stop()
        writer.stop()
        redis_server.stop()


def test_moments_and_chapters_on_a_live_stream_so_far(url_server: ServerThread, hls_server: HlsServer) -> None:
    """A live stream's windows encoded so far are scored; its chapters are computed fresh
    (its windows change) and not cached."""
    writer, url = hls_server.stream()
    try:
        with url_server.client() as client:
            stream_id = follow(client, url)["id"]
            live = wait_for(client, stream_id, lambda s: s["frames_cached"] >= 32)
            response = client.post(f"/videos/{stream_id}/moments",
                                   json={"query": "a car", "window_s": 8, "stream": False, "top_k": 1000})
            assert response.status_code == 200, response.text
            found = sorted(response.json()["moments"], key=lambda m: m["start_s"])
            assert found[0]["start_s"] == 0 and len(found) == response.json()["windows"]
            assert found[-1]["end_s"] >= live["seconds_live"] - 8  # the stream so far, tiled
            assert all(b["start_s"] == a["end_s"] for a, b in zip(found, found[1:], strict=False))
            chapters = client.post(f"/videos/{stream_id}/chapters", json={"every_s": 16, "max_new_tokens": 2,
                                                                            "summary": False, "stream": False})
            assert chapters.status_code == 200 and chapters.json()["cached"] is False
            assert client.get(f"/videos/{stream_id}/chapters.vtt").json()["error"]["code"] == "no_chapters"
            client.delete(f"/videos/{stream_id}")
    finally:
        writer.stop()
