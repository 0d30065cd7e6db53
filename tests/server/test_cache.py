"""The stores: Redis outage and recovery, the embedded LRU."""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from server.cache.memory_store import MemoryStore
from server.cache.redis_store import RedisStore, connect
from server.cache.store import Keys, Store
from tests.conftest import server_settings
from tests.harness import RedisServer, ServerThread
from tests.videos import write_video


def test_redis_outage_gives_503_and_the_server_recovers(
    tiny_checkpoint: Path, upload_dir: Path, video_dir: Path
) -> None:
    redis = RedisServer().start()
    server = ServerThread(server_settings(tiny_checkpoint, redis.url, upload_dir)).start()
    video = write_video(video_dir / "outage.mp4", seconds=3, fps=2, seed=21)
    try:
        with server.client() as client:
            video_id = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())}).json()["id"]
            assert server.wait_ready(video_id)["status"] == "ready"

            redis.stop()
            got = client.get(f"/videos/{video_id}")
            assert got.status_code == 503 and got.json()["error"]["code"] == "cache_unavailable"
            assert got.headers["retry-after"]
            posted = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())})
            assert posted.status_code == 503
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 503
            assert list(upload_dir.iterdir()) == []

            redis.start()  # same port, empty: no persistence
            assert client.get("/readyz").status_code == 200
            assert client.get(f"/videos/{video_id}").status_code == 404
            again = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())})
            assert again.status_code == 202
            assert server.wait_ready(video_id)["status"] == "ready"
    finally:
        server.stop()
        redis.stop()


def test_embedded_cache_serves_without_redis(tiny_checkpoint: Path, upload_dir: Path, video_dir: Path) -> None:
    server = ServerThread(server_settings(tiny_checkpoint, None, upload_dir)).start()
    video = write_video(video_dir / "embedded.mp4", seconds=3, fps=2, seed=22)
    try:
        with server.client() as client:
            first = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())})
            assert first.status_code == 202
            assert server.wait_ready(first.json()["id"])["frames_sampled"] == 3
            assert client.post("/videos", files={"file": ("v.mp4", video.read_bytes())}).status_code == 200
    finally:
        server.stop()


def test_memory_store_is_an_lru_bounded_in_bytes() -> None:
    async def scenario() -> None:
        store = MemoryStore(max_bytes=100, ttl_s=60)
        await store.put_tokens("a", b"x" * 40)
        await store.put_tokens("b", b"y" * 40)
        assert await store.acquire_lease("a", "job", 60)
        assert await store.put_status("a", {"id": "a", "status": "ready"}, "job")
        assert await store.get_tokens("a") == b"x" * 40  # a is now the most recent
        await store.put_tokens("c", b"z" * 40)  # evicts b
        assert await store.get_tokens("b") is None
        assert await store.has_tokens("a") and await store.has_tokens("c")
        await store.put_tokens("huge", b"h" * 101)  # larger than the whole cache: not kept
        assert not await store.has_tokens("huge") and await store.has_tokens("a")
        await store.put_tokens("d", b"w" * 90)  # evicts a and c
        assert await store.get_status("a") is None  # a ready status without tokens is gone too

    asyncio.run(scenario())


def test_memory_store_expires_tokens_and_leases() -> None:
    async def scenario() -> None:
        store = MemoryStore(max_bytes=100, ttl_s=0)
        await store.put_tokens("a", b"x")
        await asyncio.sleep(0.01)
        assert await store.get_tokens("a") is None
        assert await store.acquire_lease("v", "me", 0.01)
        assert not await store.acquire_lease("v", "other", 1)
        await asyncio.sleep(0.02)
        assert await store.acquire_lease("v", "other", 1)
        assert not await store.renew_lease("v", "me", 1)
        assert not await store.put_status("v", {"status": "processing"}, "me")  # not the holder: nothing written
        assert await store.get_status("v") is None
        assert await store.acquire_lease("s", "me", 1)
        assert await store.put_status("s", {"status": "processing"}, "me")
        await asyncio.sleep(0.01)
        assert await store.get_status("s") is None  # statuses expire too, as in Redis

    asyncio.run(scenario())


def test_memory_store_lease_takeover_and_conditional_finish() -> None:
    async def scenario() -> None:
        store = MemoryStore(max_bytes=100, ttl_s=60)
        assert await store.acquire_lease("v", "dead", 10)
        assert not await store.take_lease("v", "someone-else", "me", 10)
        assert await store.take_lease("v", "dead", "me", 10)
        assert (await store.lease_info("v"))[0] == "me"  # type: ignore[index]
        assert not await store.finish("v", "dead", b"t", {"status": "ready"})
        assert await store.get_tokens("v") is None
        assert await store.finish("v", "me", b"t", {"status": "ready"})
        assert await store.get_tokens("v") == b"t"
        await store.delete("v")
        assert await store.lease_info("v") is None  # a delete drops the lease: the job stops

    asyncio.run(scenario())


def test_hot_videos_lru_in_bytes(model) -> None:  # type: ignore[no-untyped-def]
    from server.cache.hot import HotVideos
    from tests.models.synthetic import synthetic_encoded

    video = synthetic_encoded(model, 2)
    hot = HotVideos(max_bytes=video.nbytes * 2)
    hot.put("a", video)
    hot.put("b", synthetic_encoded(model, 2))
    assert hot.get("a") is video  # now the most recent
    hot.put("c", synthetic_encoded(model, 2))
    assert hot.get("b") is None and hot.get("a") is video and hot.get("c") is not None
    hot.discard("a")
    assert hot.get("a") is None


def test_hot_copy_is_not_used_once_the_store_lost_the_tokens(app_server: ServerThread, redis_server,  # type: ignore[no-untyped-def]
                                                               video_dir: Path) -> None:
    import redis

    video = write_video(video_dir / "hot.mp4", seconds=3, fps=2, seed=23)
    with app_server.client() as client:
        video_id = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())}).json()["id"]
        app_server.wait_ready(video_id)
        body = {"question": "What?", "max_new_tokens": 2, "stream": False}
        assert client.post(f"/videos/{video_id}/ask", json=body).status_code == 200
        assert app_server.services.hot.get(video_id) is not None
        # Another replica deletes the video: only the shared store knows.
        redis.Redis.from_url(redis_server.url).delete(app_server.services.store.keys.tokens(video_id))  # type: ignore[attr-defined]
        gone = client.post(f"/videos/{video_id}/ask", json=body)
        assert gone.status_code == 404
        assert client.get(f"/videos/{video_id}").status_code == 404  # a ready status without tokens is gone


STORES = ["memory", "redis", "cluster"]


def make_store(kind: str, request: pytest.FixtureRequest) -> Store:
    if kind == "memory":
        return MemoryStore(max_bytes=1 << 20, ttl_s=60)
    server = request.getfixturevalue("redis_server" if kind == "redis" else "redis_cluster")
    return RedisStore(connect(server.url, cluster=kind == "cluster"), Keys(f"test-{kind}", "p"), 60)


def run_on(store: Store, scenario: Callable[[Store], Awaitable[None]]) -> None:
    async def run() -> None:
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(run())


@pytest.mark.parametrize("kind", STORES)
def test_every_store_step(kind: str, request: pytest.FixtureRequest) -> None:
    """The same steps on the embedded store, one Redis and a Redis Cluster, on videos spread
    over every master (the scripts over several keys of a video were CROSSSLOT there before
    the hash tag)."""
    async def scenario(store: Store) -> None:
        assert await store.ping()
        ids = [hashlib.sha256(bytes([i])).hexdigest() for i in range(12)]
        for video_id in ids:
            assert await store.acquire_lease(video_id, "a", 30)
            assert not await store.acquire_lease(video_id, "b", 30)
            assert await store.renew_lease(video_id, "a", 30) and not await store.renew_lease(video_id, "b", 30)
            owner, left = await store.lease_info(video_id)  # type: ignore[misc]
            assert owner == "a" and 0 < left <= 30
            assert await store.put_status(video_id, {"id": video_id, "status": "processing"}, "a")
            assert not await store.take_lease(video_id, "someone", "b", 30)
            assert await store.take_lease(video_id, "a", "b", 30)
            assert not await store.finish(video_id, "a", b"t", {"status": "ready"})  # no longer a's
            assert await store.finish(video_id, "b", b"tokens", {"id": video_id, "status": "ready"})
            assert await store.get_tokens(video_id) == b"tokens" and await store.has_tokens(video_id)
            assert (await store.get_status(video_id))["status"] == "ready"  # type: ignore[index]
            await store.release_lease(video_id, "b")
            assert not await store.lease_held(video_id) and await store.lease_info(video_id) is None
        for video_id in ids:
            assert await store.delete(video_id) and not await store.delete(video_id)
            assert await store.get_status(video_id) is None and not await store.has_tokens(video_id)

    run_on(make_store(kind, request), scenario)


@pytest.mark.parametrize("kind", STORES)
def test_after_a_delete_a_job_can_write_nothing(kind: str, request: pytest.FixtureRequest) -> None:
    """The lease goes with the video in one step, and every status a job writes is checked
    against its lease in the same step: a DELETE sticks."""
    async def scenario(store: Store) -> None:
        assert await store.acquire_lease("v", "job", 30)
        assert await store.put_status("v", {"id": "v", "status": "processing"}, "job")
        assert await store.delete("v")
        assert not await store.put_status("v", {"id": "v", "status": "processing"}, "job")
        assert not await store.finish("v", "job", b"t", {"id": "v", "status": "ready"})
        assert await store.get_status("v") is None and not await store.has_tokens("v")
        assert not await store.delete("v")  # nothing left to find
        assert not await store.put_status("w", {"id": "w"}, "job")  # no lease at all: nothing written
        assert await store.get_status("w") is None

    run_on(make_store(kind, request), scenario)


@pytest.mark.parametrize("kind", STORES)
def test_a_streams_windows(kind: str, request: pytest.FixtureRequest) -> None:
    """Windows are added and dropped with the status in one step, under the lease; the
    registry of followed streams; a delete takes the windows and the registry entry."""
    async def scenario(store: Store) -> None:
        stream = hashlib.sha256(b"stream").hexdigest()
        assert await store.acquire_lease(stream, "f", 30)
        await store.add_stream(stream)
        assert stream in await store.streams()
        live = {"id": stream, "status": "live"}
        assert await store.update_windows(stream, "f", {"w0": b"zero", "w1": b"one"}, [], live)
        assert await store.has_tokens(stream)
        assert await store.update_windows(stream, "f", {"w2": b"two"}, ["w0"], dict(live, seconds_live=48))
        assert await store.get_windows(stream, ["w0", "w1", "w2"]) == [None, b"one", b"two"]
        assert (await store.get_status(stream))["seconds_live"] == 48  # type: ignore[index]
        assert not await store.update_windows(stream, "other", {"w3": b"x"}, ["w1"], live)  # not its lease
        assert await store.get_windows(stream, ["w1", "w3"]) == [b"one", None]
        assert await store.delete(stream)
        assert await store.get_windows(stream, ["w1", "w2"]) == [None, None] and not await store.has_tokens(stream)
        assert stream not in await store.streams()
        assert not await store.update_windows(stream, "f", {"w4": b"x"}, [], live)  # a DELETE sticks

    run_on(make_store(kind, request), scenario)


@pytest.mark.parametrize("kind", STORES)
def test_every_store_writes_a_status_as_json(kind: str, request: pytest.FixtureRequest) -> None:
    """Whatever numbers a status holds (a hostile source's inf or NaN), every store writes
    it as JSON and it reads back, the non-finite numbers as null."""
    video = "f" * 64
    status = {"id": video, "status": "live", "seconds_live": math.inf, "lag_s": math.nan,
              "resume": {"clock_s": -math.inf, "sampled": 3}, "progress": 0.5}

    async def scenario(store: Store) -> None:
        assert await store.acquire_lease(video, "me", 30)
        assert await store.put_status(video, status, "me")
        back = await store.get_status(video)
        assert back == {**status, "seconds_live": None, "lag_s": None, "resume": {"clock_s": None, "sampled": 3}}
        assert await store.delete(video)

    run_on(make_store(kind, request), scenario)
