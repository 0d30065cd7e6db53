"""Tenants on one server: `tenant:key` API keys, each tenant's videos and streams in a
namespace of its own (one Redis, and a Redis Cluster), and each tenant's limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.tenants import ApiKey, parse_keys, public, scoped, tenant_of
from tests.conftest import server_settings
from tests.harness import ServerThread, gated_rounds
from tests.live import HlsServer
from tests.server.test_ask import sse_events
from tests.videos import write_video

KEYS = ["alpha:key-a", "beta:key-b", "plain-key"]
QUESTION = {"question": "What happens?", "max_new_tokens": 3, "stream": False}


def test_keys_name_their_tenant_and_ids_carry_it() -> None:
    assert parse_keys(["alpha:k1", "k2", "not a name:k3", "x:"]) == [
        ApiKey("alpha", b"k1"), ApiKey("", b"k2"), ApiKey("", b"not a name:k3"), ApiKey("", b"x:")]
    video = "ab" * 32
    assert scoped("", video) == video and scoped("alpha", video) == f"alpha~{video}"
    assert public(scoped("alpha", video)) == video and tenant_of(scoped("alpha", video)) == "alpha"
    assert tenant_of(video) == ""


def tenant_server(checkpoint: Path, redis_url: str, upload_dir: Path, **overrides: object) -> ServerThread:
    return ServerThread(server_settings(checkpoint, redis_url, upload_dir, api_keys=KEYS, url_allow_private=True,
                                        stream_poll_s=0.25, stream_gone_s=3.0, **overrides)).start()


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, redis_server, upload_dir: Path) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    served = tenant_server(tiny_checkpoint, redis_server.url, upload_dir, tenant_max_running=1, tenant_max_jobs=1)
    yield served
    served.stop()


def client(server: ServerThread, key: str) -> httpx.Client:
    return server.client(headers={"Authorization": f"Bearer {key}"})


def ready(http: httpx.Client, video_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http.get(f"/videos/{video_id}").json()
        if status.get("status") in ("ready", "failed"):
            return status
        time.sleep(0.05)
    raise TimeoutError(video_id)


def upload(http: httpx.Client, video: Path) -> httpx.Response:
    return http.post("/videos", files={"file": (video.name, video.read_bytes())})


def assert_hidden(http: httpx.Client, video_id: str) -> None:
    """Every route answers 404 for a video or stream of another tenant."""
    assert http.get(f"/videos/{video_id}").status_code == 404
    assert http.get(f"/videos/{video_id}/events").status_code == 404
    assert http.post(f"/videos/{video_id}/ask", json=QUESTION).status_code == 404
    assert http.post(f"/videos/{video_id}/moments", json={"query": "a dog", "stream": False}).status_code == 404
    assert http.post(f"/videos/{video_id}/chapters", json={"stream": False}).status_code == 404
    assert http.get(f"/videos/{video_id}/chapters.vtt").status_code == 404
    assert http.get(f"/videos/{video_id}/watches").status_code == 404
    assert http.post(f"/videos/{video_id}/watches", json={"query": "a dog"}).status_code == 404
    assert http.delete(f"/videos/{video_id}").status_code == 404
    chat = {"model": http.get("/v1/models").json()["data"][0]["id"], "max_tokens": 2, "messages": [
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": f"longvu://{video_id}"}},
                                     {"type": "text", "text": "What?"}]}]}
    assert http.post("/v1/chat/completions", json=chat).status_code == 404


def test_the_same_file_is_two_videos_and_neither_tenant_sees_the_others(server: ServerThread,
                                                                          video_dir: Path) -> None:
    shared = write_video(video_dir / "tenants-shared.mp4", seconds=3, fps=2, seed=81)
    own = write_video(video_dir / "tenants-own.mp4", seconds=3, fps=2, seed=82)
    with client(server, "key-a") as alpha, client(server, "key-b") as beta, client(server, "plain-key") as plain:
        first, second = upload(alpha, shared), upload(beta, shared)
        assert first.status_code == second.status_code == 202  # no hint that the other sent it
        video_id = first.json()["id"]
        assert second.json()["id"] == video_id and first.headers["location"] == f"/videos/{video_id}"
        assert ready(alpha, video_id)["status"] == ready(beta, video_id)["status"] == "ready"
        assert plain.get(f"/videos/{video_id}").status_code == 404  # the default tenant is a tenant too

        alpha_only = upload(alpha, own).json()["id"]
        assert ready(alpha, alpha_only)["status"] == "ready"
        assert_hidden(beta, alpha_only)
        assert_hidden(plain, alpha_only)
        assert alpha.post(f"/videos/{alpha_only}/ask", json=QUESTION).status_code == 200
        moments = alpha.post(f"/videos/{alpha_only}/moments", json={"query": "a dog", "stream": False})
        assert moments.status_code == 200 and moments.json()["windows"] == 1
        chapters = alpha.post(f"/videos/{alpha_only}/chapters", json={"stream": False, "max_new_tokens": 2})
        assert chapters.status_code == 200 and alpha.get(f"/videos/{alpha_only}/chapters.vtt").status_code == 200

        assert beta.delete(f"/videos/{video_id}").status_code == 204  # beta's copy only
        assert beta.get(f"/videos/{video_id}").status_code == 404
        assert alpha.get(f"/videos/{video_id}").json()["status"] == "ready"
        assert alpha.post(f"/videos/{video_id}/ask", json=QUESTION).status_code == 200
        assert "alpha" not in alpha.get("/metrics").text and "beta" not in alpha.get("/metrics").text


def test_a_stream_belongs_to_its_tenant(server: ServerThread, hls_server: HlsServer) -> None:
    writer, url = hls_server.stream()
    try:
        with client(server, "key-a") as alpha, client(server, "key-b") as beta:
            created = alpha.post("/streams", json={"url": url})
            assert created.status_code == 202, created.text
            stream_id = created.json()["id"]
            assert len(stream_id) == 64 and "~" not in stream_id
            deadline = time.monotonic() + 60
            while alpha.get(f"/videos/{stream_id}").json()["seconds_live"] < 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert alpha.post(f"/videos/{stream_id}/watches", json={"query": "a dog", "threshold": 1}).status_code \
                == 201
            assert_hidden(beta, stream_id)
            assert len(alpha.get(f"/videos/{stream_id}/watches").json()["watches"]) == 1
            assert alpha.get(f"/videos/{stream_id}").json()["status"] == "live"
            assert alpha.delete(f"/videos/{stream_id}").status_code == 204
    finally:
        writer.stop()


def test_a_tenant_at_its_answer_limit_gets_429_while_another_is_served(server: ServerThread,
                                                                       video_dir: Path) -> None:
    video = write_video(video_dir / "tenants-limit.mp4", seconds=3, fps=2, seed=83)
    with client(server, "key-a") as alpha, client(server, "key-b") as beta:
        video_id = upload(alpha, video).json()["id"]
        upload(beta, video)
        assert ready(alpha, video_id)["status"] == ready(beta, video_id)["status"] == "ready"
        limits = server.services.tenant_limits
        answers: dict[str, int] = {}

        def ask(http: httpx.Client, name: str) -> None:
            with http.stream("POST", f"/videos/{video_id}/ask", json={**QUESTION, "stream": True}) as response:
                answers[name] = response.status_code
                assert [kind for kind, _ in sse_events(response)][-1] == "done"

        with gated_rounds(server.services.engine) as gate:
            first = threading.Thread(target=ask, args=(alpha, "alpha"))
            first.start()
            while limits.answers("alpha") < 1:
                time.sleep(0.01)
            refused = alpha.post(f"/videos/{video_id}/ask", json=QUESTION)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "tenant_limit"
            assert "LONGVU_TENANT_MAX_RUNNING" in refused.json()["error"]["message"]
            other = threading.Thread(target=ask, args=(beta, "beta"))
            other.start()
            while limits.answers("beta") < 1:
                time.sleep(0.01)
            gate.release(10**6)
            first.join(30)
            other.join(30)
        assert answers == {"alpha": 200, "beta": 200}
        assert limits.answers("alpha") == limits.answers("beta") == 0
        assert alpha.post(f"/videos/{video_id}/ask", json=QUESTION).status_code == 200  # room again


def test_a_tenant_at_its_job_limit_gets_429_while_another_is_served(server: ServerThread, video_dir: Path) -> None:
    videos = [write_video(video_dir / f"tenants-job{i}.mp4", seconds=3, fps=2, seed=90 + i) for i in range(3)]
    with client(server, "key-a") as alpha, client(server, "key-b") as beta:
        with gated_rounds(server.services.engine) as gate:  # the first job holds the engine after its first step
            first = upload(alpha, videos[0])
            assert first.status_code == 202
            refused = upload(alpha, videos[1])
            assert refused.status_code == 429 and refused.headers["retry-after"] == "10"
            assert refused.json()["error"]["code"] == "tenant_limit"
            assert "LONGVU_TENANT_MAX_JOBS" in refused.json()["error"]["message"]
            served = upload(beta, videos[2])
            assert served.status_code == 202
            gate.release(10**6)
        assert ready(alpha, first.json()["id"])["status"] == "ready"
        assert ready(beta, served.json()["id"])["status"] == "ready"
        again = upload(alpha, videos[1])  # room again
        assert again.status_code == 202 and ready(alpha, again.json()["id"])["status"] == "ready"
    assert not list(server.services.settings.tmp_dir.iterdir())  # no upload left a file behind


def test_tenants_on_a_cluster(tiny_checkpoint: Path, redis_cluster, upload_dir: Path, video_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """The same on a Redis Cluster: the tenant is in the keys' hash tag, so each tenant's
    copy of a video is its own, and the scripts over a video's keys stay in one slot."""
    served = tenant_server(tiny_checkpoint, redis_cluster.url, upload_dir, redis_cluster=True)
    try:
        video = write_video(video_dir / "tenants-cluster.mp4", seconds=3, fps=2, seed=84)
        with client(served, "key-a") as alpha, client(served, "key-b") as beta:
            first, second = upload(alpha, video), upload(beta, video)
            assert first.status_code == second.status_code == 202
            video_id = first.json()["id"]
            assert ready(alpha, video_id)["status"] == ready(beta, video_id)["status"] == "ready"
            keys = served.services.store.keys  # type: ignore[attr-defined]
            assert "{alpha~" + video_id + "}" in keys.tokens(scoped("alpha", video_id))
            assert beta.delete(f"/videos/{video_id}").status_code == 204
            assert alpha.post(f"/videos/{video_id}/ask", json=QUESTION).status_code == 200
            assert_hidden(beta, video_id)
    finally:
        served.stop()
