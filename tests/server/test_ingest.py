"""POST /videos end to end: real uvicorn, real Redis, real videos decoded by PyAV."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import server_settings
from tests.harness import ServerThread
from tests.videos import png_bytes, write_audio_only, write_video, write_zero_frame_video


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frames_decoded(server: ServerThread) -> float:
    return server.services.metrics.frames_decoded._value.get()


def encoded_count(server: ServerThread, outcome: str = "ready") -> float:
    return server.services.metrics.videos_encoded.labels(outcome)._value.get()


def upload(server: ServerThread, data: bytes, name: str = "video.mp4"):  # type: ignore[no-untyped-def]
    with server.client() as client:
        return client.post("/videos", files={"file": (name, data, "video/mp4")})


@pytest.fixture(scope="module")
def fresh_video(video_dir: Path) -> Path:
    return write_video(video_dir / "ingest.mp4", seconds=10, fps=3, seed=11)


def test_upload_then_ready_then_cache_hit(app_server: ServerThread, fresh_video: Path) -> None:
    first = upload(app_server, fresh_video.read_bytes())
    assert first.status_code == 202
    body = first.json()
    assert body["id"] == sha(fresh_video) and body["status"] == "processing"
    assert first.headers["location"] == f"/videos/{body['id']}"

    ready = app_server.wait_ready(body["id"])
    assert ready["status"] == "ready" and ready["progress"] == 1.0
    assert ready["frames_sampled"] == 10 and ready["frames_cached"] == 10
    assert ready["rows_cached"] == 10 * 144
    assert (ready["frames_kept"], ready["tokens_cached"]) == (10, 10 * 144)  # deprecated names, same values
    assert ready["duration_s"] == pytest.approx(10, abs=0.5)
    assert ready["bytes"] > 0 and ready["width"] == 64 and ready["height"] == 48

    decoded = frames_decoded(app_server)
    again = upload(app_server, fresh_video.read_bytes())
    assert again.status_code == 200 and again.json()["status"] == "ready"
    assert frames_decoded(app_server) == decoded  # no decoding on a cache hit


def test_an_ingest_says_what_it_does_in_the_log(app_server: ServerThread, video_dir: Path,
                                                caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import server.jobs

    monkeypatch.setattr(server.jobs, "LOG_INTERVAL_S", 0.0)  # a progress line at every tick
    caplog.set_level("INFO", logger="longvu.jobs")
    engine = app_server.services.engine
    video = write_video(video_dir / "logged.mp4", seconds=5, fps=2, seed=17)
    release = threading.Event()
    holder = threading.Thread(target=engine.run_on_device, args=(release.wait,))
    holder.start()
    time.sleep(0.2)
    video_id = upload(app_server, video.read_bytes()).json()["id"]
    deadline = time.monotonic() + 10  # a progress tick while the job waits for the device
    while not any("video done" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)
    release.set()
    assert app_server.wait_ready(video_id)["status"] == "ready"
    lines = [r.getMessage() for r in caplog.records if r.name == "longvu.jobs" and video_id[:12] in r.getMessage()]
    assert "started, 5 s of 64x48" in lines[0]
    assert any("of 5 s of video done" in line and "realtime" in line for line in lines[1:-1])
    assert "ready in" in lines[-1] and "5 frames sampled" in lines[-1] and "5 cached (720 SVA rows)" in lines[-1]


def test_ten_concurrent_identical_uploads_are_processed_once(app_server: ServerThread, video_dir: Path) -> None:
    video = write_video(video_dir / "concurrent.mp4", seconds=8, fps=2, seed=12)
    data = video.read_bytes()
    before_jobs, before_frames = encoded_count(app_server), frames_decoded(app_server)
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: upload(app_server, data), range(10)))
    assert {r.status_code for r in responses} <= {200, 202}
    assert {r.json()["id"] for r in responses} == {sha(video)}
    assert app_server.wait_ready(sha(video))["status"] == "ready"
    assert encoded_count(app_server) == before_jobs + 1
    assert frames_decoded(app_server) == before_frames + 8


def test_delete_removes_the_tokens(app_server: ServerThread, redis_server, video_dir: Path) -> None:  # type: ignore[no-untyped-def]
    video = write_video(video_dir / "delete.mp4", seconds=3, fps=2, seed=13)
    video_id = upload(app_server, video.read_bytes()).json()["id"]
    app_server.wait_ready(video_id)
    keys = app_server.services.store.keys  # type: ignore[attr-defined]
    import redis

    client = redis.Redis.from_url(redis_server.url)
    assert client.exists(keys.tokens(video_id))
    with app_server.client() as http:
        assert http.delete(f"/videos/{video_id}").status_code == 204
        assert http.get(f"/videos/{video_id}").status_code == 404
        assert http.delete(f"/videos/{video_id}").json()["error"]["code"] == "not_found"
    assert not client.exists(keys.tokens(video_id))


def test_an_id_is_exactly_64_hex_digits() -> None:
    import pytest

    from server.errors import ApiError
    from server.routes.videos import check_id

    assert check_id("a" * 64, "") == "a" * 64 and check_id("a" * 64, "team") == "team~" + "a" * 64
    for bad in ("a" * 64 + "\n", "\n" + "a" * 64, "a" * 63, "A" * 64):
        with pytest.raises(ApiError):
            check_id(bad, "")


def test_unknown_and_malformed_ids_are_404(app_server: ServerThread) -> None:
    with app_server.client() as client:
        for path in ("/videos/" + "0" * 64, "/videos/not-an-id"):
            response = client.get(path)
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_restarted_app_finds_the_cache(
    app_server: ServerThread, tiny_checkpoint: Path, redis_server, upload_dir: Path, fresh_video: Path  # type: ignore[no-untyped-def]
) -> None:
    video_id = upload(app_server, fresh_video.read_bytes()).json()["id"]
    app_server.wait_ready(video_id)
    second = ServerThread(server_settings(tiny_checkpoint, redis_server.url, upload_dir)).start()
    try:
        with second.client() as client:
            assert client.get(f"/videos/{video_id}").json()["status"] == "ready"
        response = upload(second, fresh_video.read_bytes())
        assert response.status_code == 200
        assert frames_decoded(second) == 0
    finally:
        second.stop()


def test_failed_job_reports_and_can_be_retried(
    tiny_checkpoint: Path, redis_server, upload_dir: Path, video_dir: Path  # type: ignore[no-untyped-def]
) -> None:
    server = ServerThread(server_settings(tiny_checkpoint, redis_server.url, upload_dir, decode_timeout_s=0.0)).start()
    try:
        video = write_video(video_dir / "fails.mp4", seconds=4, fps=2, seed=14)
        for attempt in (1, 2):
            response = upload(server, video.read_bytes())
            assert response.status_code == 202
            status = server.wait_ready(response.json()["id"])
            assert status["status"] == "failed" and status["error_code"] == "decode_timeout"
            assert status["error"]
            assert encoded_count(server, "failed") == attempt
        assert list(upload_dir.iterdir()) == []
    finally:
        server.stop()


def test_processing_without_a_lease_reads_as_failed(app_server: ServerThread) -> None:
    import asyncio

    video_id = "f" * 64
    status = {"id": video_id, "status": "processing", "progress": 0.3}
    asyncio.run(_put_status(app_server, video_id, status))
    with app_server.client() as client:
        body = client.get(f"/videos/{video_id}").json()
    assert body["status"] == "failed" and body["error_code"] == "job_lost"


async def _put_status(server: ServerThread, video_id: str, status: dict) -> None:
    from server.cache.redis_store import RedisStore, connect

    store = server.services.store
    assert isinstance(store, RedisStore)
    fresh = RedisStore(connect(server.settings.redis_url or "", cluster=False), store.keys, 60)
    assert await fresh.acquire_lease(video_id, "gone", 60)
    assert await fresh.put_status(video_id, status, "gone")
    await fresh.release_lease(video_id, "gone")  # the job died: its status stays, its lease does not
    await fresh.close()


# --- URL intake -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/never"
    sock.close()


def test_url_intake(url_server: ServerThread, file_server: str, video_dir: Path) -> None:
    video = write_video(video_dir / "by-url.mp4", seconds=4, fps=2, seed=15)
    with url_server.client() as client:
        response = client.post("/videos", json={"url": f"{file_server}/by-url.mp4"})
    assert response.status_code == 202
    assert response.json()["id"] == sha(video)
    assert url_server.wait_ready(sha(video))["frames_sampled"] == 4


# --- bad input: a clear JSON 4xx, nothing left behind, the server healthy ----------------


def _text_mp4() -> bytes:
    return b"this is not a video, only text in a file named .mp4\n" * 10


BAD_UPLOADS = {
    "empty": (lambda d: b"", 400, "empty_video"),
    "random bytes": (lambda d: bytes(range(256)) * 64, 415, "unsupported_media"),
    "text named .mp4": (lambda d: _text_mp4(), 415, "unsupported_media"),
    "png": (lambda d: png_bytes(), 415, "unsupported_media"),
    "audio only": (lambda d: write_audio_only(d / "audio.mp4").read_bytes(), 415, "unsupported_media"),
    "truncated mp4": (lambda d: write_video(d / "trunc.mp4", 6).read_bytes()[:3000], 415, "unsupported_media"),
    "zero frames": (lambda d: write_zero_frame_video(d / "zero.mp4").read_bytes(), 415, "unsupported_media"),
    "hls playlist": (lambda d: b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n", 415,
                     "unsupported_media"),
    "ffconcat": (lambda d: b"ffconcat version 1.0\nfile '/etc/passwd'\n", 415, "unsupported_media"),
    "over size": (lambda d: b"\x00\x00\x00\x18ftypmp42" + bytes(4 << 20), 413, "too_large"),
}


def _redis_keys(redis_server) -> set[bytes]:  # type: ignore[no-untyped-def]
    import redis

    return set(redis.Redis.from_url(redis_server.url).keys("*"))


def _assert_nothing_left(server: ServerThread, upload_dir: Path, keys_before: set[bytes], redis_server) -> None:  # type: ignore[no-untyped-def]
    assert list(upload_dir.iterdir()) == []
    assert _redis_keys(redis_server) == keys_before
    with server.client() as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads(case: str, app_server: ServerThread, upload_dir: Path, tmp_path: Path, redis_server) -> None:  # type: ignore[no-untyped-def]
    make, status, code = BAD_UPLOADS[case]
    keys_before = _redis_keys(redis_server)
    response = upload(app_server, make(tmp_path))
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    _assert_nothing_left(app_server, upload_dir, keys_before, redis_server)


def test_bad_request_bodies(app_server: ServerThread) -> None:
    with app_server.client() as client:
        no_file = client.post("/videos", files={"other": ("x.mp4", b"abc", "video/mp4")})
        assert no_file.status_code == 400 and no_file.json()["error"]["code"] == "bad_request"
        plain = client.post("/videos", content=b"abc", headers={"content-type": "text/plain"})
        assert plain.status_code == 400
        bad_json = client.post("/videos", content=b"{nope", headers={"content-type": "application/json"})
        assert bad_json.status_code == 422 and bad_json.json()["error"]["code"] == "invalid_request"


LOOPBACK_SPELLINGS = ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "[::1]", "localhost",
                      "127.0.0.1.", "[::ffff:127.0.0.1]"]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_loopback_urls_are_refused(host: str, app_server: ServerThread, upload_dir: Path, redis_server) -> None:  # type: ignore[no-untyped-def]
    keys_before = _redis_keys(redis_server)
    with app_server.client() as client:
        response = client.post("/videos", json={"url": f"http://{host}:{app_server.port}/healthz"})
    # Spellings httpx cannot parse (octal) are invalid, "127.0.0.1." resolves to nothing; the rest
    # reach the address guard.
    assert response.status_code == 422 and response.json()["error"]["code"] in ("url_not_allowed", "url_invalid", "url_unreachable")
    _assert_nothing_left(app_server, upload_dir, keys_before, redis_server)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/video.mp4", "file:///etc/passwd", "gopher://x/", "http:///nohost"])
def test_non_http_urls_are_refused(url: str, app_server: ServerThread) -> None:
    with app_server.client() as client:
        response = client.post("/videos", json={"url": url})
    assert response.status_code == 422 and response.json()["error"]["code"] == "url_not_allowed"


def test_redirect_to_metadata_address_is_refused(url_server: ServerThread, file_server: str, upload_dir: Path) -> None:
    with url_server.client() as client:
        response = client.post("/videos", json={"url": f"{file_server}/redirect-private"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "url_not_allowed"
    assert "link-local" in response.json()["error"]["message"]
    assert list(upload_dir.iterdir()) == []


def test_url_that_never_answers(url_server: ServerThread, silent_server: str, upload_dir: Path) -> None:
    with url_server.client() as client:
        response = client.post("/videos", json={"url": silent_server})
    assert response.status_code == 422 and response.json()["error"]["code"] == "url_timeout"
    assert list(upload_dir.iterdir()) == []


def test_a_job_is_not_started_for_a_video_finished_meanwhile(app_server: ServerThread, video_dir: Path,
                                                            upload_dir: Path) -> None:
    """The race of two uploads: the second found no tokens, then the first job finished and
    let its lease go before the second took it. Under the lease, the second looks again."""
    from server.ingest.intake import Received
    from server.ingest.probe import probe

    video = write_video(video_dir / "finished-meanwhile.mp4", seconds=3, fps=2, seed=17)
    video_id = upload(app_server, video.read_bytes()).json()["id"]
    assert app_server.wait_ready(video_id)["status"] == "ready"
    copy = upload_dir / "late.upload"
    copy.write_bytes(video.read_bytes())
    try:
        jobs = app_server.services.jobs
        encoded = encoded_count(app_server)
        received = Received(copy, video_id, copy.stat().st_size)
        assert app_server.run_in_loop(jobs.start(received, probe(copy, app_server.settings))) is None
        assert not jobs.jobs and encoded_count(app_server) == encoded
        assert not app_server.run_in_loop(app_server.services.store.lease_held(video_id))  # given back
    finally:
        copy.unlink()
