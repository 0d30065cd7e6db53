"""An answer whose logits overflow the model's dtype ends with `numerical_error`, on real
uvicorn: the tiny checkpoint with an output head that float16 holds but whose logits it
does not, served in float16 on the CPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.build import build_inputs
from models.language.generate import generate_ids
from models.language.sampling import SamplingParams
from models.model import load_longvu
from models.tiny import write_overflow_checkpoint
from tests.conftest import server_settings
from tests.harness import ServerThread
from tests.models.synthetic import synthetic_encoded
from tests.server.test_ask import QUESTION, metric, sse_events, upload_ready
from tests.videos import write_video


@pytest.fixture(scope="module")
def half_server(tmp_path_factory: pytest.TempPathFactory, upload_dir: Path) -> Iterator[ServerThread]:
    checkpoint = write_overflow_checkpoint(tmp_path_factory.mktemp("overflow"))
    server = ServerThread(server_settings(checkpoint, None, upload_dir, dtype="float16")).start()
    yield server
    server.stop()


def test_an_overflow_ends_the_answer_with_a_clear_error(half_server: ServerThread, video_dir: Path) -> None:
    video_id = upload_ready(half_server, write_video(video_dir / "overflow-half.mp4", seconds=3, fps=2, seed=61))
    before = metric(half_server, "longvu_numerical_errors_total")
    with half_server.client() as client:
        with client.stream("POST", f"/videos/{video_id}/ask", json=QUESTION) as response:
            assert response.status_code == 200
            events = list(sse_events(response))
        assert [kind for kind, _ in events] == ["error"]  # no garbage token streamed first
        error = events[0][1]
        assert error["code"] == "numerical_error"
        assert "float16" in error["message"] and "LONGVU_DTYPE=bfloat16" in error["message"]

        chat = {"model": client.get("/v1/models").json()["data"][0]["id"], "max_tokens": 4, "messages": [
            {"role": "user", "content": [{"type": "video_url", "video_url": {"url": f"longvu://{video_id}"}},
                                         {"type": "text", "text": "What happens?"}]}]}
        reply = client.post("/v1/chat/completions", json=chat)
        assert reply.status_code == 500
        assert reply.json()["error"]["code"] == "numerical_error" and reply.json()["error"]["type"] == "server_error"
        assert client.get("/readyz").status_code == 200  # the server goes on
    assert metric(half_server, "longvu_numerical_errors_total") == before + 2


def test_the_same_checkpoint_answers_in_float32(tmp_path: Path) -> None:
    """The overflow is float16's, not the checkpoint's: in float32 its answers are finite."""
    model = load_longvu(str(write_overflow_checkpoint(tmp_path)))
    embeds = build_inputs(model, synthetic_encoded(model, 2), "Why?").inputs_embeds
    assert len(list(generate_ids(model, embeds, SamplingParams(max_new_tokens=3), stop_ids=set()))) == 3
