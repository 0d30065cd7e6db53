"""Answers from a real vLLM (CPU build) fed our `inputs_embeds`, through our real uvicorn
server, against the embedded engine's answers for the same checkpoint, video and question."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.harness import ServerThread, TcpRelay, VllmServer, wait_until
from tests.server.test_ask import ask, metric, sse_events, upload_ready

GOLDEN = Path(__file__).parents[1] / "golden"


@pytest.fixture(scope="module")
def clips(app_server: ServerThread) -> dict[str, str]:
    """A 10-second clip and a 10-minute video (the STC regime), ingested once; the two
    servers share the cache."""
    return {name: upload_ready(app_server, GOLDEN / f"{name}.mp4") for name in ("short", "long")}


@pytest.mark.parametrize("clip", ["short", "long"])
def test_greedy_answers_equal_the_embedded_engines(app_server: ServerThread, remote_server: ServerThread,
                                                   clips: dict[str, str], clip: str) -> None:
    """Greedy without a repetition penalty: vLLM counts placeholder ids at prompt_embeds
    positions as prompt tokens for its penalty (README, deliberate differences)."""
    body = {"question": "What happens in the video?", "max_new_tokens": 24, "stream": False, "repetition_penalty": 1.0}
    local = ask(app_server, clips[clip], **body).json()
    remote = ask(remote_server, clips[clip], **body).json()
    assert remote["answer"] == local["answer"] and remote["usage"] == local["usage"]
    assert remote["compression"] == local["compression"]
    if clip == "long":
        assert local["compression"]["stc_applied"] and local["usage"]["prompt_tokens"] > 8000


def test_streamed_remote_answer(remote_server: ServerThread, clips: dict[str, str]) -> None:
    body = {"question": "Describe it.", "max_new_tokens": 16, "ignore_eos": True}
    whole = ask(remote_server, clips["short"], **body, stream=False).json()
    with remote_server.client() as client:
        with client.stream("POST", f"/videos/{clips['short']}/ask", json=body) as response:
            events = list(sse_events(response))
    assert [kind for kind, _ in events[:-1]] == ["token"] * (len(events) - 1) and events[-1][0] == "done"
    assert "".join(d["text"] for kind, d in events if kind == "token") == whole["answer"]
    assert events[-1][1]["usage"]["completion_tokens"] == 16 and events[-1][1]["finish_reason"] == "length"
    assert events[-1][1]["timings"]["ttft_s"] > 0


def upstream_request(relay: TcpRelay, before: int) -> threading.Event:
    """The one completions request sent through the relay since it had carried `before`."""
    assert wait_until(lambda: len(relay.completions) > before, 10)
    [request] = relay.completions[before:]
    return request


def test_a_client_that_leaves_closes_its_vllm_stream(remote_server: ServerThread, vllm_server: VllmServer,
                                                     vllm_relay: TcpRelay, clips: dict[str, str]) -> None:
    """The client leaves while vLLM generates a 14,000-token answer: our stream to vLLM
    closes at once, and vLLM aborts the request (generating it takes vLLM over 30 s; its
    0.32 counts no abort in `request_success_total`)."""
    before = len(vllm_relay.completions)
    body = {"question": "Go on.", "max_new_tokens": 14000, "ignore_eos": True}
    with remote_server.client() as client:
        with client.stream("POST", f"/videos/{clips['short']}/ask", json=body) as response:
            assert response.status_code == 200
            upstream = upstream_request(vllm_relay, before)
            assert not upstream.is_set()
    assert upstream.wait(5)
    assert wait_until(lambda: metric(remote_server, "longvu_asks_open") == 0, 5)
    assert wait_until(lambda: vllm_server.metric("vllm:num_requests_running") == 0, 10)


def test_vllm_killed_mid_answer_then_back(remote_server: ServerThread, vllm_server: VllmServer,
                                          vllm_relay: TcpRelay, clips: dict[str, str]) -> None:
    """vLLM dies while it generates an answer: the answer ends with an `llm_unavailable`
    error event; readiness and new questions say 503 with Retry-After; once vLLM is back,
    questions are answered again."""
    before = len(vllm_relay.completions)
    body = {"question": "Go on.", "max_new_tokens": 14000, "ignore_eos": True}
    try:
        with remote_server.client() as client:
            with client.stream("POST", f"/videos/{clips['short']}/ask", json=body) as response:
                upstream_request(vllm_relay, before)
                vllm_server.kill()
                events = list(sse_events(response))
            assert events[-1][0] == "error" and events[-1][1]["code"] == "llm_unavailable"
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["error"]["code"] == "llm_unavailable"
            refused = ask(remote_server, clips["short"], stream=False)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "llm_unavailable"
            assert refused.headers["Retry-After"]
            assert client.get("/healthz").status_code == 200
    finally:
        if vllm_server.process is None:
            vllm_server.start()
    with remote_server.client() as client:
        assert wait_until(lambda: client.get("/readyz").status_code == 200, 30)
    answered = ask(remote_server, clips["short"], stream=False)
    assert answered.status_code == 200 and answered.json()["answer"]


def test_an_unreachable_llm_server_is_a_clear_503(tiny_checkpoint: Path, redis_server, upload_dir: Path,  # type: ignore[no-untyped-def]
                                                  clips: dict[str, str]) -> None:
    from tests.conftest import server_settings
    from tests.harness import free_port

    settings = server_settings(tiny_checkpoint, redis_server.url, upload_dir,
                               llm_url=f"http://127.0.0.1:{free_port()}/v1")
    server = ServerThread(settings).start()
    try:
        with server.client() as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "unavailable" in ready.json()["error"]["message"]
        refused = ask(server, clips["short"], stream=False)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "llm_unavailable"
        assert refused.headers["Retry-After"] == "5"
    finally:
        server.stop()


def test_chapters_through_vllm_and_moments_refused_clearly(remote_server: ServerThread,
                                                           clips: dict[str, str]) -> None:
    """Chapters are questions, so vLLM answers them; a window's score needs both tokens'
    logits, which vLLM's top logprobs need not hold: 501 naming why."""
    with remote_server.client() as client:
        response = client.post(f"/videos/{clips['short']}/chapters",
                               json={"every_s": 5, "max_new_tokens": 3, "stream": False})
        assert response.status_code == 200, response.text
        assert [(c["start_s"], c["end_s"]) for c in response.json()["chapters"]] == [(0, 5), (5, 10)]
        refused = client.post(f"/videos/{clips['short']}/moments", json={"query": "a dog"})
        assert refused.status_code == 501 and refused.json()["error"]["code"] == "scoring_unavailable"
        assert "LONGVU_LLM_URL" in refused.json()["error"]["message"]
