"""POST /videos/{id}/chapters and GET /videos/{id}/chapters.vtt on real uvicorn, real Redis
and a real video: captions per chapter, a summary, cached with the video."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import webvtt

from server.vtt import chapters_vtt
from tests.harness import ServerThread
from tests.server.test_ask import metric, sse_events, upload_ready
from tests.videos import write_video


@pytest.fixture(scope="module")
def video(video_dir: Path) -> Path:
    return write_video(video_dir / "chapters.mp4", seconds=40, fps=1, seed=11)


def chapters(server: ServerThread, video_id: str, **body: object) -> list[tuple[str, dict]]:
    with server.client() as client:
        with client.stream("POST", f"/videos/{video_id}/chapters", json=body) as response:
            assert response.status_code == 200, response.read()
            return list(sse_events(response))


def test_chapters_stream_then_come_from_the_cache(app_server: ServerThread, video: Path) -> None:
    video_id = upload_ready(app_server, video)
    tokens = metric(app_server, "longvu_generated_tokens_total")
    events = chapters(app_server, video_id, every_s=16, max_new_tokens=6)
    kinds = [kind for kind, _ in events]
    assert kinds.count("chapter") == 3 and kinds.count("done") == 1 and kinds[-1] == "done"
    assert kinds.index("summary") > max(i for i, k in enumerate(kinds) if k == "chapter")  # the reduce comes last
    done = events[-1][1]
    assert [(c["index"], c["start_s"], c["end_s"]) for c in done["chapters"]] == [(0, 0, 16), (1, 16, 32),
                                                                                    (2, 32, 40)]
    assert sorted((c for k, c in events if k == "chapter"), key=lambda c: c["index"]) == done["chapters"]
    assert done["summary"] == "".join(d["text"] for k, d in events if k == "summary").strip()
    assert done["cached"] is False
    assert metric(app_server, "longvu_generated_tokens_total") > tokens

    generated = metric(app_server, "longvu_generated_tokens_total")
    again = chapters(app_server, video_id, every_s=16, max_new_tokens=6)
    assert again[-1][1]["cached"] is True
    assert (again[-1][1]["chapters"], again[-1][1]["summary"]) == (done["chapters"], done["summary"])
    assert metric(app_server, "longvu_generated_tokens_total") == generated  # no model call
    assert metric(app_server, 'longvu_chapter_requests_total{cached="true"}') >= 1

    with app_server.client() as client:
        track = client.get(f"/videos/{video_id}/chapters.vtt")
        assert track.status_code == 200 and track.headers["content-type"].startswith("text/vtt")
        cues = webvtt.from_buffer(io.StringIO(track.text))
        assert [(c.start_in_seconds, c.end_in_seconds) for c in cues] == [(0, 16), (16, 32), (32, 40)]
        assert [c.text for c in cues] == [" ".join(c["text"].split()) or "(no caption)" for c in done["chapters"]]

        assert client.delete(f"/videos/{video_id}").status_code in (200, 204)
        assert client.get(f"/videos/{video_id}/chapters.vtt").status_code == 404
    video_id = upload_ready(app_server, video)  # the same video again: its chapters went with it
    with app_server.client() as client:
        missing = client.get(f"/videos/{video_id}/chapters.vtt")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_chapters"


def test_default_chapters_without_summary_not_streamed(app_server: ServerThread, video: Path) -> None:
    video_id = upload_ready(app_server, video)
    with app_server.client() as client:
        response = client.post(f"/videos/{video_id}/chapters",
                               json={"summary": False, "stream": False, "max_new_tokens": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    # 40 s over 12 is under 30 s: chapters of 30 s.
    assert [(c["start_s"], c["end_s"]) for c in body["chapters"]] == [(0, 30), (30, 40)]
    assert body["summary"] is None


@pytest.mark.parametrize(("body", "param"), [({"every_s": 0}, "every_s"), ({"max_new_tokens": 0}, "max_new_tokens"),
                                             ({"every_s": 0.001}, "every_s"), ({"extra": True}, "extra")])
def test_bad_chapters_requests_name_the_field(app_server: ServerThread, video: Path, body: dict, param: str) -> None:
    video_id = upload_ready(app_server, video)
    with app_server.client() as client:
        response = client.post(f"/videos/{video_id}/chapters", json=body)
    assert response.status_code == 422 and response.json()["error"]["param"] == param


def test_webvtt_cues_escape_what_would_break_them() -> None:
    text = chapters_vtt([{"index": 0, "start_s": 0, "end_s": 3725.5, "text": "a --> b\n\nc <i> & d"}])
    (cue,) = webvtt.from_buffer(io.StringIO(text))
    assert (cue.start, cue.end) == ("00:00:00.000", "01:02:05.500")
    assert cue.raw_text == "a --&gt; b c &lt;i&gt; &amp; d"


def test_many_long_captions_are_cut_to_leave_the_video_half_the_context(app_server: ServerThread) -> None:
    from models.language.prompt import prompt_ids
    from server.chapters import fitting_summary_question
    from server.schemas import Chapter

    svc = app_server.services
    captions = [Chapter(index=i, start_s=30.0 * i, end_s=30.0 * (i + 1), text="a long caption " * 40)
                for i in range(120)]
    text = app_server.run_in_loop(fitting_summary_question(svc, captions))
    ids = prompt_ids(svc.model.tokenizer, svc.model.config, text)
    assert len(ids) <= svc.model.config.tokenizer_model_max_length // 2
    assert text.count("\n[") == 120 and "[59:30-1:00:00] a long" in text  # every chapter keeps its line
