"""POST /videos/{id}/moments on real uvicorn, real Redis and a real video: every window of
the range scored, each score equal to the LLM's own on the same inputs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from models.build import build_inputs
from models.language.yes_no import YesNo, question
from models.model import LongVU
from models.vision.encoded import EncodedVideo
from server.errors import ApiError
from server.moments import tile
from tests.harness import ServerThread
from tests.server.test_ask import metric, sse_events, upload_ready
from tests.videos import write_video

QUERY = "a red ball rolls across the floor"


@pytest.fixture(scope="module")
def video_id(app_server: ServerThread, video_dir: Path) -> str:
    """40 s of changing frames at 1 fps: too short to prune, so every second is held."""
    return upload_ready(app_server, write_video(video_dir / "moments.mp4", seconds=40, fps=1, seed=7))


def encoded_of(server: ServerThread, video_id: str) -> EncodedVideo:
    data = server.run_in_loop(server.services.store.get_tokens(video_id))
    assert data is not None
    return EncodedVideo.from_bytes(data)


def moments(server: ServerThread, video_id: str, **body: object) -> list[tuple[str, dict]]:
    with server.client() as client:
        with client.stream("POST", f"/videos/{video_id}/moments", json={"query": QUERY, **body}) as response:
            assert response.status_code == 200, response.read()
            return list(sse_events(response))


@torch.inference_mode()
def direct_score(model: LongVU, window: EncodedVideo, query: str) -> tuple[float, list[float]]:
    """The LLM run by transformers on the window's inputs_embeds, softmax over the two tokens."""
    built = build_inputs(model, window, question(query))
    logits = model.llm(inputs_embeds=built.inputs_embeds).logits[0, -1]
    yes_no = YesNo.from_tokenizer(model.tokenizer)
    pair = torch.softmax(logits[[yes_no.yes, yes_no.no]].float(), dim=-1)
    return float(pair[0]), [round(float(t), 3) for t in built.timestamps]


def test_every_window_scored_as_the_llm_scores_it(app_server: ServerThread, video_id: str, model: LongVU) -> None:
    events = moments(app_server, video_id, start_s=3, end_s=30, window_s=8, top_k=2)
    kinds = [kind for kind, _ in events]
    assert kinds == ["moment"] * 4 + ["done"]
    scored = sorted((data for kind, data in events if kind == "moment"), key=lambda m: m["start_s"])
    # The windows tile [3, 30): 8 s each, the last one short.
    assert [(m["start_s"], m["end_s"]) for m in scored] == [(3, 11), (11, 19), (19, 27), (27, 30)]
    encoded = encoded_of(app_server, video_id)
    for m in scored:
        expected, seconds = direct_score(model, encoded.window(m["start_s"], m["end_s"]), QUERY)
        assert m["score"] == pytest.approx(expected, abs=1e-5)
        assert m["seconds"] == seconds == [float(s) for s in range(int(m["start_s"]), int(m["end_s"]))]
    done = events[-1][1]
    assert done["windows"] == 4
    best = sorted(scored, key=lambda m: -m["score"])[:2]
    assert done["moments"] == best
    assert done["timings"]["total_s"] >= done["timings"]["first_moment_s"] > 0


def test_overlapping_windows_and_a_non_streamed_list(app_server: ServerThread, video_id: str) -> None:
    with app_server.client() as client:
        response = client.post(f"/videos/{video_id}/moments",
                               json={"query": QUERY, "window_s": 10, "stride_s": 5, "stream": False, "top_k": 100})
    assert response.status_code == 200, response.text
    body = response.json()
    spans = sorted((m["start_s"], m["end_s"]) for m in body["moments"])
    assert body["windows"] == len(spans) == 8
    assert spans == [(a, min(a + 10, 40)) for a in range(0, 40, 5)]
    streamed = {(m["start_s"], m["end_s"]): m["score"]
                for kind, m in moments(app_server, video_id, window_s=10, stride_s=5) if kind == "moment"}
    assert {(m["start_s"], m["end_s"]): m["score"] for m in body["moments"]} == pytest.approx(streamed, abs=1e-6)


def test_a_leaving_client_stops_the_scoring(app_server: ServerThread, video_id: str) -> None:
    before = metric(app_server, "longvu_windows_scored_total")
    with app_server.client() as client:
        with client.stream("POST", f"/videos/{video_id}/moments", json={"query": QUERY, "window_s": 1}) as response:
            for kind, _ in sse_events(response):
                assert kind == "moment"
                break  # leave after the first window
    deadline = time.monotonic() + 30
    while metric(app_server, "longvu_asks_open") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(app_server, "longvu_asks_open") == 0
    settled = metric(app_server, "longvu_windows_scored_total")
    time.sleep(1.0)
    assert metric(app_server, "longvu_windows_scored_total") == settled  # nothing more runs
    assert settled - before < 40  # the range's 40 windows were not all scored
    assert metric(app_server, "longvu_cancelled_requests_total") >= 1


def test_metrics_count_requests_and_windows(app_server: ServerThread, video_id: str) -> None:
    requests, windows = (metric(app_server, name) for name in ("longvu_moment_requests_total",
                                                               "longvu_windows_scored_total"))
    assert len(moments(app_server, video_id, window_s=20)) == 3
    assert metric(app_server, "longvu_moment_requests_total") == requests + 1
    assert metric(app_server, "longvu_windows_scored_total") == windows + 2
    assert metric(app_server, "longvu_moments_seconds_count") >= 1


@pytest.mark.parametrize(("body", "status", "code", "param"), [
    ({"query": ""}, 422, "invalid_request", "query"),
    ({"query": QUERY, "window_s": 0}, 422, "invalid_request", "window_s"),
    ({"query": QUERY, "stride_s": -1}, 422, "invalid_request", "stride_s"),
    ({"query": QUERY, "top_k": 0}, 422, "invalid_request", "top_k"),
    ({"query": QUERY, "start_s": 40}, 422, "empty_range", "start_s"),
    ({"query": QUERY, "surprise": 1}, 422, "invalid_request", "surprise"),
])
def test_bad_requests_name_the_field(app_server: ServerThread, video_id: str, body: dict, status: int, code: str,
                                     param: str) -> None:
    with app_server.client() as client:
        response = client.post(f"/videos/{video_id}/moments", json=body)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert (error["code"], error["param"]) == (code, param)
        assert client.get("/readyz").status_code == 200


def test_an_unknown_video_is_404(app_server: ServerThread) -> None:
    with app_server.client() as client:
        response = client.post(f"/videos/{'0' * 64}/moments", json={"query": QUERY})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_too_many_windows_names_the_setting_it_broke() -> None:
    assert len(tile(0, 100, 10, 10, limit=10, param="window_s")) == 10
    with pytest.raises(ApiError) as refused:
        tile(0, 100.5, 10, 10, limit=10, param="window_s")
    assert (refused.value.status, refused.value.code, refused.value.param) == (422, "too_many_windows", "window_s")


def test_a_pruned_video_scores_every_window(app_server: ServerThread, static_long_video: Path) -> None:
    """150 s of one frame: DINO keeps few frames, so most windows hold none of their own
    and are scored from the kept frame standing for their seconds."""
    video_id = upload_ready(app_server, static_long_video)
    encoded = encoded_of(app_server, video_id)
    assert encoded.pruned and encoded.frames_cached < 150 // 4
    events = moments(app_server, video_id, window_s=4, top_k=3)
    scored = [data for kind, data in events if kind == "moment"]
    assert len(scored) == events[-1][1]["windows"] == 38  # ceil(150 / 4)
    held = [float(t) for t in encoded.timestamps]
    standing_in = 0
    for m in scored:
        own = [t for t in held if m["start_s"] <= t < m["end_s"]]
        standing = [t for t in held if t < m["start_s"]][-1:] or held[:1]
        assert m["seconds"] == (own or standing)
        assert 0.0 <= m["score"] <= 1.0
        standing_in += not own
    assert standing_in >= 38 - encoded.frames_cached
