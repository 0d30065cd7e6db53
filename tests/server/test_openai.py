"""The OpenAI-compatible endpoint, driven by the official `openai` package against a real
uvicorn server with real Redis."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import server_settings
from tests.harness import ServerThread
from tests.server.test_ask import ask, metric, upload_ready
from tests.videos import write_video

QUESTION = "What happens in the video?"


def client_for(server: ServerThread, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)


def model_name(server: ServerThread) -> str:
    return client_for(server).models.list().data[0].id


def video_message(url: str, text: str = QUESTION) -> dict:
    return {"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                        {"type": "text", "text": text}]}


@pytest.fixture(scope="module")
def video_id(url_server: ServerThread, video_dir: Path) -> str:
    return upload_ready(url_server, write_video(video_dir / "openai.mp4", seconds=5, fps=2, seed=41))


def test_models_lists_the_served_model(url_server: ServerThread) -> None:
    models = client_for(url_server).models.list().data
    assert len(models) == 1 and models[0].object == "model" and models[0].id


def test_by_id_equals_the_native_answer(url_server: ServerThread, video_id: str) -> None:
    native = ask(url_server, video_id, question=QUESTION, max_new_tokens=12, stream=False).json()
    client = client_for(url_server)
    reply = client.chat.completions.create(model=model_name(url_server), max_tokens=12, temperature=0,
                                           messages=[video_message(f"longvu://{video_id}")])
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == native["answer"]
    assert reply.choices[0].finish_reason == native["finish_reason"]
    assert reply.usage.prompt_tokens == native["usage"]["prompt_tokens"]
    assert reply.usage.completion_tokens == native["usage"]["completion_tokens"]

    chunks = list(client.chat.completions.create(
        model=model_name(url_server), max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}, messages=[video_message(f"longvu://{video_id}")]))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == native["answer"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == native["finish_reason"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == native["usage"]["completion_tokens"]


def test_by_url_ingests_then_answers(url_server: ServerThread, file_server: str, video_dir: Path) -> None:
    write_video(video_dir / "openai-url.mp4", seconds=3, fps=2, seed=42)
    encoded = metric(url_server, "longvu_videos_encoded_total")
    reply = client_for(url_server).chat.completions.create(
        model=model_name(url_server), max_tokens=5, messages=[video_message(f"{file_server}/openai-url.mp4")])
    assert reply.choices[0].message.content is not None and reply.usage.completion_tokens >= 1
    assert metric(url_server, "longvu_videos_encoded_total") == encoded + 1


def test_by_data_url_streams_progress_then_the_answer(url_server: ServerThread, video_dir: Path) -> None:
    video = write_video(video_dir / "openai-data.mp4", seconds=3, fps=2, seed=43)
    data_url = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
    body = {"model": model_name(url_server), "max_tokens": 4, "stream": True, "messages": [video_message(data_url)]}
    with httpx.Client(base_url=url_server.url, timeout=60) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line]
    assert any(line.startswith(": ingest") for line in lines)  # progress while it is processed
    assert lines[-1] == "data: [DONE]" and any('"chat.completion.chunk"' in line for line in lines)
    second = client_for(url_server).chat.completions.create(model=model_name(url_server), max_tokens=4,
                                                            messages=[video_message(data_url)])
    assert second.choices[0].message.content is not None  # now cached: answered at once


def test_an_oversized_data_url_is_413_before_decoding(url_server: ServerThread, upload_dir: Path) -> None:
    limit = url_server.settings.max_upload_bytes
    data_url = "data:video/mp4;base64," + "A" * (limit * 4 // 3 + 400)
    with pytest.raises(openai.APIStatusError) as caught:
        client_for(url_server).chat.completions.create(model=model_name(url_server), max_tokens=4,
                                                       messages=[video_message(data_url)])
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "too_large" and caught.value.body["type"] == "invalid_request_error"
    assert list(upload_dir.iterdir()) == []


def test_multi_turn_and_stop_strings(url_server: ServerThread, video_id: str) -> None:
    client = client_for(url_server)
    name = model_name(url_server)
    messages = [{"role": "system", "content": "Answer briefly."}, video_message(f"longvu://{video_id}"),
                {"role": "assistant", "content": "Somebody walks."}, {"role": "user", "content": "And then?"}]
    full = client.chat.completions.create(model=name, max_tokens=20, messages=messages)
    text = full.choices[0].message.content
    single = client.chat.completions.create(model=name, max_tokens=20, messages=[video_message(f"longvu://{video_id}")])
    assert full.usage.prompt_tokens > single.usage.prompt_tokens  # the other turns are in the prompt
    assert len(text) >= 4
    stop = text[2:4]
    cut = client.chat.completions.create(model=name, max_tokens=20, messages=messages, stop=[stop, "never"])
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_openai_errors(url_server: ServerThread, video_id: str) -> None:
    client = client_for(url_server)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[video_message(f"longvu://{video_id}")])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=model_name(url_server), messages=[video_message("longvu://" + "0" * 64)])
    with pytest.raises(openai.BadRequestError) as no_video:
        client.chat.completions.create(model=model_name(url_server), messages=[{"role": "user", "content": "hi"}])
    assert "video_url" in no_video.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model_name(url_server), n=2, messages=[video_message(f"longvu://{video_id}")])


@pytest.fixture()
def keyed_server(tiny_checkpoint: Path, redis_server, upload_dir: Path) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    server = ServerThread(server_settings(tiny_checkpoint, redis_server.url, upload_dir, api_keys=["sk-good"])).start()
    yield server
    server.stop()


def test_api_keys_apply(keyed_server: ServerThread) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client_for(keyed_server, "sk-bad").models.list()
    assert caught.value.status_code == 401 and caught.value.body["type"] == "authentication_error"
    assert client_for(keyed_server, "sk-good").models.list().data
