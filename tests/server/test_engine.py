"""The engine under a real uvicorn server: continuous batching, faults, leaving clients."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from server.engine import Engine
from tests.conftest import server_settings
from tests.harness import ServerThread
from tests.server.test_ask import QUESTION, ask, metric, sse_events, upload_ready
from tests.videos import write_video


@pytest.fixture()
def server(tiny_checkpoint: Path, redis_server, upload_dir: Path) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    """Its own server: these tests break the engine on purpose."""
    server = ServerThread(server_settings(tiny_checkpoint, redis_server.url, upload_dir, prefill_tokens=64)).start()
    yield server
    server.stop()


@pytest.fixture()
def video_id(server: ServerThread, video_dir: Path) -> str:
    return upload_ready(server, write_video(video_dir / "engine.mp4", seconds=4, fps=2, seed=36))


def test_a_question_joins_the_running_decode(server: ServerThread, video_id: str) -> None:
    """A question sent while another is answering gets its first token before the first
    answer ends, and both answers equal the ones given alone."""
    long_q = {"question": "What happens?", "max_new_tokens": 200, "ignore_eos": True}
    short_q = {"question": "Who is there and what are they wearing?", "max_new_tokens": 10, "ignore_eos": True}
    alone_long = ask(server, video_id, **long_q, stream=False).json()["answer"]
    alone_short = ask(server, video_id, **short_q, stream=False).json()["answer"]

    engine: Engine = server.services.engine
    most = 0
    step = engine._round

    def spy():  # type: ignore[no-untyped-def]
        nonlocal most
        step()
        most = max(most, len(engine.decoding.batch.decoding))

    engine._round = spy  # type: ignore[method-assign]
    order: list[str] = []
    with server.client() as client:
        with client.stream("POST", f"/videos/{video_id}/ask", json=long_q) as response:
            events = sse_events(response)
            first = next(events)
            assert first[0] == "token"
            short = ask(server, video_id, **short_q, stream=False)
            order.append("short done")
            rest = list(events)
            order.append("long done")
    assert short.status_code == 200 and short.json()["answer"] == alone_short
    assert order == ["short done", "long done"]  # it did not wait for the running answer
    assert first[1]["text"] + "".join(d["text"] for k, d in rest if k == "token") == alone_long
    assert rest[-1][1]["answer"] == alone_long and rest[-1][1]["finish_reason"] == "length"
    assert most >= 2  # they decoded in the same steps


def test_many_concurrent_questions_keep_their_answers(server: ServerThread, video_id: str) -> None:
    questions = [f"Question number {i}: what is shown{'?' * i}" for i in range(6)]
    alone = [ask(server, video_id, question=q, stream=False).json()["answer"] for q in questions]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda q: ask(server, video_id, question=q, stream=False).json()["answer"],
                                 questions))
    assert together == alone


def test_a_failing_step_fails_its_questions_only(server: ServerThread, video_id: str) -> None:
    engine: Engine = server.services.engine
    decode = engine.decoding.batch.decode
    calls = {"n": 0}

    def flaky():  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected")
        return decode()

    engine.decoding.batch.decode = flaky  # type: ignore[method-assign]
    failed = ask(server, video_id, stream=False, ignore_eos=True)
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "generation_failed"
    assert engine.dead is None and engine.running == 0 and not engine.decoding.batch.decoding
    served = ask(server, video_id, stream=False, ignore_eos=True)
    assert served.status_code == 200 and served.json()["usage"]["completion_tokens"] == QUESTION["max_new_tokens"]
    with server.client() as client:
        assert client.get("/readyz").status_code == 200


def test_a_dead_worker_turns_readiness_off_and_nobody_hangs(server: ServerThread, video_id: str,
                                                            video_dir: Path) -> None:
    engine: Engine = server.services.engine
    gate = threading.Event()
    step = engine._round

    def dying():  # type: ignore[no-untyped-def]
        if engine.running:
            gate.wait(5)
            raise SystemExit("injected worker death")  # escapes every per-question guard
        step()

    engine._round = dying  # type: ignore[method-assign]
    with server.client() as client:
        with client.stream("POST", f"/videos/{video_id}/ask",
                           json={**QUESTION, "max_new_tokens": 500, "ignore_eos": True}) as response:
            gate.set()
            events = list(sse_events(response))
        assert events[-1][0] == "error" and events[-1][1]["code"] == "worker_dead"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "worker_dead"
        started = time.monotonic()
        refused = client.post(f"/videos/{video_id}/ask", json={**QUESTION, "stream": False})
        assert refused.status_code == 503 and time.monotonic() - started < 2
        upload = client.post("/videos", files={"file": ("v.mp4", write_video(
            video_dir / "after-death.mp4", seconds=2, fps=2, seed=37).read_bytes())})
        assert upload.status_code == 202
        assert server.wait_ready(upload.json()["id"], timeout=20)["status"] == "failed"


def test_a_non_streamed_client_that_leaves_frees_its_slot(server: ServerThread, video_id: str) -> None:
    engine: Engine = server.services.engine
    cancelled = metric(server, "longvu_cancelled_requests_total")
    body = b'{"question": "Go on.", "max_new_tokens": 4000, "ignore_eos": true, "stream": false}'
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /videos/%s/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (video_id.encode(), len(body), body))
        deadline = time.monotonic() + 10
        while engine.running == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.running == 1
    left = time.monotonic()
    while engine.running and time.monotonic() - left < 5:
        time.sleep(0.01)
    assert engine.running == 0 and time.monotonic() - left < 1.0
    assert metric(server, "longvu_cancelled_requests_total") == cancelled + 1


def test_questions_cancelled_while_queued_are_never_prefilled(server: ServerThread, video_id: str) -> None:
    engine: Engine = server.services.engine
    release = threading.Event()
    holder = threading.Thread(target=engine.run_on_device, args=(release.wait,))
    holder.start()
    time.sleep(0.2)
    admitted: list[object] = []
    start = engine.decoding.start
    engine.decoding.start = lambda a, b: (admitted.append(a), start(a, b))  # type: ignore[method-assign, func-returns-value]
    with httpx.Client(base_url=server.url, timeout=0.5) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"/videos/{video_id}/ask", json={**QUESTION, "stream": False})
    deadline = time.monotonic() + 5
    while engine.waiting and not engine._waiting[0].cancelled.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    holder.join(5)
    served = ask(server, video_id, stream=False)
    assert served.status_code == 200
    assert len(admitted) == 1  # only the later question reached the batch


def test_max_new_tokens_is_bounded_by_the_setting(server: ServerThread, video_id: str) -> None:
    response = ask(server, video_id, max_new_tokens=4096 + 1)
    assert response.status_code == 422 and "max_new_tokens" in response.json()["error"]["message"]


def test_the_warm_up_runs_the_ingest_path_too(model, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The pruning kernel (and the towers) run once at start-up: the first upload does not
    pay their compilation on the engine thread."""
    import models.vision.encode
    from server.decoding.local import LocalDecoding
    from server.metrics import Metrics

    pruned: list[int] = []
    prune = models.vision.encode.window_prune
    monkeypatch.setattr(models.vision.encode, "window_prune", lambda f, *a, **k: pruned.append(len(f)) or prune(f, *a, **k))
    metrics = Metrics()
    decoding = LocalDecoding(model, metrics, max_running=1, max_new_tokens=8, prefill_tokens=512, cuda_graphs=False)
    engine = Engine(model, metrics, decoding, max_queue=1)
    try:
        engine.warm_up()
    finally:
        engine.stop()
    assert pruned == [2]


def test_eager_decode_steps_are_counted(server: ServerThread, video_id: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The graphs' fallback path forced on the CPU (every shape failed to capture): each
    decode step of an answer counts in longvu_decode_graph_fallbacks_total, and the answer
    is the same as without graphs."""
    from models.language.batching import DecodeGraphs

    plain = ask(server, video_id, stream=False, ignore_eos=True).json()["answer"]
    batch = server.services.engine.decoding.batch
    monkeypatch.setattr(batch, "_graphs", DecodeGraphs(batch._forward_decode))
    before = metric(server, "longvu_decode_graph_fallbacks_total")
    answer = ask(server, video_id, stream=False, ignore_eos=True).json()
    assert answer["answer"] == plain
    # The first token comes from the prefill; every later one from a decode step.
    assert metric(server, "longvu_decode_graph_fallbacks_total") - before == answer["usage"]["completion_tokens"] - 1
