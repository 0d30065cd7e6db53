"""POST /videos/{id}/ask against a real uvicorn server with the tiny model and real Redis."""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

from models.language.int8 import Int8Linear
from tests.conftest import server_settings
from tests.harness import ServerThread
from tests.videos import write_video

QUESTION = {"question": "What happens in the video?", "max_new_tokens": 12}


def ask(server: ServerThread, video_id: str, **body: object) -> httpx.Response:
    with server.client() as client:
        return client.post(f"/videos/{video_id}/ask", json={**QUESTION, **body})


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event:
            yield event, json.loads(line[len("data: "):])
            event = None


def upload_ready(server: ServerThread, video: Path) -> str:
    with server.client() as client:
        video_id = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())}).json()["id"]
    status = server.wait_ready(video_id)
    assert status["status"] == "ready", status
    return video_id


def metric(server: ServerThread, name: str) -> float:
    with server.client() as client:
        text = client.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if re.match(rf"^{re.escape(name)}(\{{.*\}})? ", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def video_id(app_server: ServerThread, video_dir: Path) -> str:
    return upload_ready(app_server, write_video(video_dir / "ask.mp4", seconds=6, fps=2, seed=31))


def test_stream_and_non_stream_agree(app_server: ServerThread, video_id: str) -> None:
    with app_server.client() as client:
        with client.stream("POST", f"/videos/{video_id}/ask", json={**QUESTION, "ignore_eos": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(response))
    kinds = [kind for kind, _ in events]
    assert kinds.count("done") == 1 and kinds[-1] == "done" and "error" not in kinds
    tokens = [data["text"] for kind, data in events if kind == "token"]
    assert len(tokens) >= 2
    done = events[-1][1]
    assert done["answer"] == "".join(tokens)
    assert done["usage"]["completion_tokens"] == 12
    assert done["usage"]["visual_tokens"] == done["compression"]["visual_tokens_after"] > 0
    assert {"queue_wait_s", "cache_load_s", "prefill_s", "ttft_s", "total_s"} <= set(done["timings"])
    assert done["compression"]["frames_sampled"] == 6

    plain = ask(app_server, video_id, stream=False, ignore_eos=True)
    assert plain.status_code == 200 and plain.json()["answer"] == done["answer"]


def test_tokens_arrive_before_the_stream_ends(app_server: ServerThread, video_id: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker is held after each token: a token event reaches the client while the
    server cannot have produced the rest of the answer."""
    engine = app_server.services.engine
    gate = threading.Semaphore(0)
    step = engine._round
    monkeypatch.setattr(engine, "_round", lambda: gate.acquire() and step())
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        with app_server.client() as client:
            with client.stream("POST", f"/videos/{video_id}/ask",
                               json={**QUESTION, "max_new_tokens": 30, "ignore_eos": True}) as response:
                for item in sse_events(response):
                    lines.put(item)

    reader = threading.Thread(target=read)
    reader.start()
    first = None
    for _ in range(30):
        gate.release()
        try:
            first = lines.get(timeout=2)
            break
        except queue.Empty:
            continue
    assert first is not None and first[0] == "token"
    assert lines.empty()  # the answer is not finished: no done event yet
    gate.release(100)
    reader.join(30)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert rest[-1][0] == "done"


def test_disconnect_frees_the_worker(app_server: ServerThread, video_id: str) -> None:
    cancelled = metric(app_server, "longvu_cancelled_requests_total")
    with app_server.client() as client:
        with client.stream("POST", f"/videos/{video_id}/ask",
                           json={**QUESTION, "max_new_tokens": 4000, "ignore_eos": True}) as response:
            for kind, _ in sse_events(response):
                assert kind == "token"
                break  # leave after the first token: the connection closes
    deadline = time.monotonic() + 5
    while metric(app_server, "longvu_cancelled_requests_total") == cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(app_server, "longvu_cancelled_requests_total") == cancelled + 1
    assert metric(app_server, "longvu_running_requests") == 0
    follow = ask(app_server, video_id, stream=False)
    assert follow.status_code == 200 and "answer" in follow.json()


def test_error_statuses(app_server: ServerThread, video_id: str) -> None:
    unknown = ask(app_server, "a" * 64)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    for body in ({"question": ""}, {"question": "hi", "max_new_tokens": 0}, {"question": "hi", "top_p": 0},
                 {"question": "hi", "temperature": -1}, {"question": "hi", "extra": 1}, {"nope": 1}):
        with app_server.client() as client:
            bad = client.post(f"/videos/{video_id}/ask", json=body)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request", body
    too_long = ask(app_server, video_id, question="é" * 6000)  # two byte tokens each
    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "question_too_long"


def test_second_question_does_no_vision_work(app_server: ServerThread, video_id: str) -> None:
    decoded = metric(app_server, "longvu_frames_decoded_total")
    encoded = metric(app_server, 'longvu_videos_encoded_total')
    hits = metric(app_server, "longvu_cache_hits_total")
    for _ in range(2):
        assert ask(app_server, video_id, stream=False).status_code == 200
    assert metric(app_server, "longvu_frames_decoded_total") == decoded
    assert metric(app_server, "longvu_videos_encoded_total") == encoded
    assert metric(app_server, "longvu_cache_hits_total") == hits + 2


@pytest.fixture()
def held_server(tiny_checkpoint: Path, redis_server, upload_dir: Path) -> Iterator[tuple[ServerThread, threading.Event]]:  # type: ignore[no-untyped-def]
    """A server whose model worker is held by a piece of device work until the event is set."""
    server = ServerThread(server_settings(tiny_checkpoint, redis_server.url, upload_dir, max_queue=2,
                                          max_running=1)).start()
    release = threading.Event()
    holder = threading.Thread(target=server.services.engine.run_on_device, args=(release.wait,))
    yield server, release, holder  # type: ignore[misc]
    release.set()
    server.stop()


def test_queue_overflow_is_refused_at_once(held_server, video_dir: Path, app_server: ServerThread) -> None:  # type: ignore[no-untyped-def]
    server, release, holder = held_server
    video_id = upload_ready(server, write_video(video_dir / "overflow.mp4", seconds=3, fps=2, seed=32))
    holder.start()
    time.sleep(0.2)
    ingest_step = threading.Thread(target=server.services.engine.run_on_device, args=(lambda: None,))
    ingest_step.start()  # waits behind the holder
    with ThreadPoolExecutor(2) as pool:
        accepted = [pool.submit(ask, server, video_id, stream=False) for _ in range(2)]
        deadline = time.monotonic() + 5
        while server.services.engine.waiting < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert metric(server, "longvu_questions_waiting") == 2
        assert metric(server, "longvu_queue_depth") == 2  # deprecated name, same count
        assert metric(server, "longvu_ingest_steps_waiting") == 1
        started = time.monotonic()
        refused = ask(server, video_id, stream=False)
        assert time.monotonic() - started < 2
        assert refused.status_code == 429 and refused.headers["retry-after"]
        assert refused.json()["error"]["code"] == "overloaded"
        assert metric(server, "longvu_rejected_requests_total") == 1
        release.set()
        assert [f.result().status_code for f in accepted] == [200, 200]


def test_asking_while_processing_is_409(held_server, video_dir: Path) -> None:  # type: ignore[no-untyped-def]
    server, release, holder = held_server
    holder.start()
    time.sleep(0.2)
    video = write_video(video_dir / "processing.mp4", seconds=3, fps=2, seed=33)
    with server.client() as client:
        video_id = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())}).json()["id"]
        assert client.get(f"/videos/{video_id}").json()["status"] == "processing"
        assert metric(server, "longvu_jobs_in_progress") == 1
        response = ask(server, video_id)
        assert response.status_code == 409 and response.headers["retry-after"]
        assert response.json()["error"]["code"] == "not_ready"
    release.set()
    status = server.wait_ready(video_id)
    assert status["status"] == "ready", status
    assert ask(server, video_id, stream=False).status_code == 200


def test_api_keys(tiny_checkpoint: Path, redis_server, upload_dir: Path) -> None:  # type: ignore[no-untyped-def]
    server = ServerThread(server_settings(tiny_checkpoint, redis_server.url, upload_dir,
                                          api_keys=["first-key", "second-key"])).start()
    try:
        with server.client() as client:
            for path in ("/healthz", "/readyz", "/metrics"):
                assert client.get(path).status_code == 200
            missing = client.get("/videos/" + "0" * 64)
            assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
            assert missing.headers["www-authenticate"] == "Bearer"
            wrong = client.get("/videos/" + "0" * 64, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert client.post("/videos", headers={"Authorization": "Basic first-key"}).status_code == 401
            good = client.get("/videos/" + "0" * 64, headers={"Authorization": "Bearer second-key"})
            assert good.status_code == 404
            assert 'status="401"' in client.get("/metrics").text
    finally:
        server.stop()


METRICS = {
    "longvu_http_requests_total": "counter", "longvu_queue_wait_seconds": "histogram",
    "longvu_cache_load_seconds": "histogram", "longvu_prefill_seconds": "histogram",
    "longvu_time_to_first_token_seconds": "histogram", "longvu_inter_token_seconds": "histogram",
    "longvu_ask_seconds": "histogram", "longvu_video_decode_seconds": "histogram",
    "longvu_video_encode_seconds": "histogram", "longvu_frames_decoded_total": "counter",
    "longvu_frames_cached_total": "counter", "longvu_frames_kept_total": "counter",
    "longvu_visual_tokens_before_total": "counter",
    "longvu_visual_tokens_after_total": "counter", "longvu_generated_tokens_total": "counter",
    "longvu_cache_hits_total": "counter", "longvu_cache_misses_total": "counter",
    "longvu_cancelled_requests_total": "counter", "longvu_rejected_requests_total": "counter",
    "longvu_questions_waiting": "gauge", "longvu_ingest_steps_waiting": "gauge", "longvu_queue_depth": "gauge",
    "longvu_running_requests": "gauge", "longvu_jobs_in_progress": "gauge",
    "longvu_gpu_memory_bytes": "gauge", "longvu_video_seconds_ingested_total": "counter",
    "longvu_videos_encoded_total": "counter",
}


def test_metrics_are_exported_and_move(app_server: ServerThread, video_dir: Path) -> None:
    with app_server.client() as client:
        text = client.get("/metrics").text
    for name, kind in METRICS.items():
        assert f"# TYPE {name} {kind}" in text, name

    moving = ["longvu_video_decode_seconds_count", "longvu_video_encode_seconds_count", "longvu_frames_decoded_total",
              "longvu_frames_cached_total", "longvu_frames_kept_total", "longvu_cache_misses_total",
              "longvu_video_seconds_ingested_total",
              "longvu_queue_wait_seconds_count", "longvu_cache_load_seconds_count", "longvu_prefill_seconds_count",
              "longvu_time_to_first_token_seconds_count", "longvu_inter_token_seconds_count",
              "longvu_ask_seconds_count", "longvu_visual_tokens_before_total", "longvu_visual_tokens_after_total",
              "longvu_generated_tokens_total", "longvu_cache_hits_total", "longvu_http_requests_total"]
    before = {name: metric(app_server, name) for name in moving}
    video_id = upload_ready(app_server, write_video(video_dir / "metrics.mp4", seconds=4, fps=2, seed=34))
    assert ask(app_server, video_id, stream=False, ignore_eos=True).status_code == 200
    for name in moving:
        assert metric(app_server, name) > before[name], name
    with app_server.client() as client:
        assert video_id not in client.get("/metrics").text  # labels carry route templates only


def test_a_time_range_question_uses_only_that_range(app_server: ServerThread, video_dir: Path) -> None:
    video_id = upload_ready(app_server, write_video(video_dir / "range.mp4", seconds=20, fps=1, seed=38))
    whole = ask(app_server, video_id, stream=False).json()
    assert whole["compression"]["seconds"] == [float(s) for s in range(20)]
    decoded = metric(app_server, "longvu_frames_decoded_total")
    encoded = metric(app_server, "longvu_videos_encoded_total")
    part = ask(app_server, video_id, stream=False, start_s=5, end_s=9.5)
    assert part.status_code == 200
    compression = part.json()["compression"]
    assert compression["seconds"] == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert compression["frames_sampled"] == compression["frames_used"] == 5
    assert compression["frames_kept"] == 5  # the deprecated name of frames_used
    assert part.json()["usage"]["visual_tokens"] < whole["usage"]["visual_tokens"]
    assert metric(app_server, "longvu_frames_decoded_total") == decoded  # no decoding,
    assert metric(app_server, "longvu_videos_encoded_total") == encoded  # no encoding
    tail = ask(app_server, video_id, stream=False, start_s=18).json()["compression"]["seconds"]
    assert tail == [18.0, 19.0]
    instant = ask(app_server, video_id, stream=False, start_s=7, end_s=7)  # both bounds inclusive
    assert instant.status_code == 200 and instant.json()["compression"]["seconds"] == [7.0]
    for bounds, code in (({"start_s": 30, "end_s": 40}, "empty_range"), ({"start_s": 9, "end_s": 5}, "invalid_range"),
                         ({"start_s": 5.2, "end_s": 5.8}, "empty_range")):
        bad = ask(app_server, video_id, stream=False, **bounds)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == code, bounds
    negative = ask(app_server, video_id, stream=False, start_s=-1)
    assert negative.status_code == 422 and negative.json()["error"]["code"] == "invalid_request"


def test_an_answer_with_int8_weights(tiny_checkpoint: Path, redis_server, upload_dir: Path,  # type: ignore[no-untyped-def]
                                     app_server: ServerThread, video_dir: Path) -> None:
    """LONGVU_LLM_WEIGHTS=int8: the answer streams as with float weights, and greedy decoding
    picks float's first token (later ones may part: the tiny model's logits are nearly flat)."""
    video = write_video(video_dir / "int8.mp4", seconds=4, fps=2, seed=37)
    server = ServerThread(server_settings(tiny_checkpoint, redis_server.url, upload_dir, llm_weights="int8")).start()
    try:
        with server.client() as client:
            ready = client.get("/readyz").json()
            assert ready["llm_weights"] == "int8"
            assert ready["fingerprint"] == app_server.services.model.fingerprint  # the cached videos stay shared
        assert all(isinstance(m, Int8Linear) for m in server.services.model.llm.modules()
                   if isinstance(m, (torch.nn.Linear, Int8Linear)))
        video_id = upload_ready(server, video)
        with server.client() as client:
            with client.stream("POST", f"/videos/{video_id}/ask",
                               json={**QUESTION, "ignore_eos": True, "temperature": 0}) as response:
                events = list(sse_events(response))
        assert [kind for kind, _ in events].count("token") >= 2 and events[-1][0] == "done"
        done = events[-1][1]
        assert done["usage"]["completion_tokens"] == 12
        reference = ask(app_server, video_id, stream=False, ignore_eos=True, temperature=0).json()
        assert done["usage"]["prompt_tokens"] == reference["usage"]["prompt_tokens"]
        assert done["answer"].split()[0] == reference["answer"].split()[0]
    finally:
        server.stop()


def test_a_second_question_about_a_video_skips_prefilling_it(app_server: ServerThread, video_dir: Path) -> None:
    """The prefix cache (LONGVU_PREFIX_CACHE): the next question's prompt takes the video's
    keys and values from the last one; only the question's own positions are prefilled."""
    video_id = upload_ready(app_server, write_video(video_dir / "prefix.mp4", seconds=5, fps=2, seed=38))
    first = ask(app_server, video_id, stream=False, question="What is in the room?").json()
    reused = metric(app_server, 'longvu_prompt_positions_total{source="reused"}')
    prefilled = metric(app_server, 'longvu_prompt_positions_total{source="prefilled"}')
    second = ask(app_server, video_id, stream=False, question="Which colours change?").json()
    prompt = second["usage"]["prompt_tokens"]
    assert prompt > first["usage"]["prompt_tokens"] - 8  # much the same prompt
    took = metric(app_server, 'longvu_prompt_positions_total{source="reused"}') - reused
    assert prompt - 48 < took < prompt  # all but the question and the turn around it
    assert metric(app_server, 'longvu_prompt_positions_total{source="prefilled"}') - prefilled == prompt - took
