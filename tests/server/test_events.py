"""GET /videos/{id}/events: live ingest progress over SSE, against real uvicorn and Redis."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.harness import ServerThread
from tests.server.test_ask import sse_events, upload_ready
from tests.videos import write_video


def events_of(server: ServerThread, video_id: str) -> list[tuple[str, dict, float]]:
    started = time.monotonic()
    with server.client() as client:
        with client.stream("GET", f"/videos/{video_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            return [(kind, data, time.monotonic() - started) for kind, data in sse_events(response)]


def test_progress_is_monotonic_and_ends_ready(app_server: ServerThread, video_dir: Path) -> None:
    video = write_video(video_dir / "events.mp4", seconds=40, fps=1, width=48, height=32, seed=51)
    engine = app_server.services.engine
    release = threading.Event()
    # The device is held first, so the subscriber sees the job before and while it runs.
    holder = threading.Thread(target=engine.run_on_device, args=(release.wait,))
    holder.start()
    with app_server.client() as client:
        video_id = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())}).json()["id"]
    threading.Timer(0.6, release.set).start()
    events = events_of(app_server, video_id)
    holder.join(5)
    kinds = [kind for kind, _, _ in events]
    assert kinds[-1] == "ready" and set(kinds[:-1]) == {"progress"} and len(kinds) >= 2
    assert events[0][2] < 0.5  # the current state comes at once
    progress = [data["progress"] for _, data, _ in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    running = [data for kind, data, _ in events if kind == "progress"]
    assert all(d["stage"] in ("queued", "decoding", "encoding") and d["status"] == "processing" for d in running)
    assert events[-1][1]["frames_sampled"] == 40


def test_a_late_subscriber_gets_the_final_state_at_once(app_server: ServerThread, video_dir: Path) -> None:
    video_id = upload_ready(app_server, write_video(video_dir / "events-late.mp4", seconds=3, fps=2, seed=52))
    events = events_of(app_server, video_id)
    assert [kind for kind, _, _ in events] == ["ready"] and events[0][2] < 1.0
    assert events[0][1]["id"] == video_id and events[0][1]["status"] == "ready"


def test_unknown_video_is_404(app_server: ServerThread) -> None:
    with app_server.client() as client:
        response = client.get("/videos/" + "e" * 64 + "/events")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
