"""The token cache on a real Redis Cluster (3 masters, a replica each, on loopback): two server
replicas sharing it, and a master killed mid-ingest (the store's own steps on a cluster are
in test_cache.py, beside one Redis and the embedded store)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from server.cache.store import Keys
from tests.conftest import server_settings
from tests.harness import RedisClusterServer, ServerThread, wait_until
from tests.server.test_ask import ask, metric
from tests.server.test_faults import hold, post
from tests.videos import write_video


def test_a_videos_keys_share_one_slot(redis_cluster: RedisClusterServer) -> None:
    keys = Keys("m", "p")
    video_id = "ab" * 32
    client = RedisCluster.from_url(redis_cluster.url)
    slots = {client.keyslot(key) for key in (keys.tokens(video_id), keys.status(video_id), keys.lease(video_id))}
    client.close()
    assert len(slots) == 1


@pytest.fixture(scope="module")
def replicas(tiny_checkpoint: Path, redis_cluster: RedisClusterServer, upload_dir: Path) -> Iterator[list[ServerThread]]:
    """Two servers on the cluster, each given a different node's URL. Leases as in production
    (30 s): a loaded CI machine must not make a live job look like an orphan."""
    servers = [ServerThread(server_settings(tiny_checkpoint, redis_cluster.nodes[i].url, upload_dir,
                                            redis_cluster=True, lease_s=30.0)).start() for i in (0, 1)]
    yield servers
    for server in servers:
        server.stop()


def test_two_replicas_encode_a_video_sent_to_both_once(replicas: list[ServerThread], video_dir: Path) -> None:
    a, b = replicas
    video = write_video(video_dir / "cluster-both.mp4", seconds=6, fps=2, seed=501)
    encoded = sum(metric(s, "longvu_videos_encoded_total") for s in replicas)
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda server: post(server, video), [a, b] * 3))
    assert {r.status_code for r in responses} <= {200, 202}
    video_id = responses[0].json()["id"]
    assert a.wait_ready(video_id)["status"] == "ready" and b.wait_ready(video_id)["status"] == "ready"
    assert sum(metric(s, "longvu_videos_encoded_total") for s in replicas) == encoded + 1
    answers = [ask(server, video_id, stream=False).json()["answer"] for server in replicas]
    assert answers[0] == answers[1]  # the same cached tokens, greedy on both
    with a.client() as client:
        assert client.delete(f"/videos/{video_id}").status_code == 204
    with b.client() as client:
        assert client.get(f"/videos/{video_id}").status_code == 404
        assert client.get(f"/videos/{video_id}/events").status_code == 404


def test_an_orphaned_lease_on_a_cluster_is_taken_over(replicas: list[ServerThread], redis_cluster: RedisClusterServer,
                                                      video_dir: Path) -> None:
    server = replicas[1]
    video = write_video(video_dir / "cluster-orphan.mp4", seconds=3, fps=2, seed=502)
    video_id = hashlib.sha256(video.read_bytes()).hexdigest()
    keys = server.services.store.keys  # type: ignore[attr-defined]
    client = RedisCluster.from_url(redis_cluster.url)
    client.set(keys.lease(video_id), "a-dead-replica", px=1_000)  # missed its renewals
    client.set(keys.status(video_id), '{"id": "%s", "status": "processing", "progress": 0.3}' % video_id)
    client.close()
    assert post(server, video).status_code == 202
    assert server.wait_ready(video_id, timeout=30)["status"] == "ready"


def promoted(cluster: RedisClusterServer, key: str, dead: object) -> bool:
    try:
        return cluster.master_of(key) is not dead
    except LookupError:  # no live master for the slot yet
        return False


def test_a_master_killed_mid_ingest_fails_over(tiny_checkpoint: Path, upload_dir: Path, video_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The master of the video's slot is killed while the job waits for the device; its
    replica takes over and the job finishes on it (or fails cleanly, and a re-upload works).
    Nothing is served from a half-written key: a ready video's tokens answer questions."""
    cluster = RedisClusterServer().start()
    server = ServerThread(server_settings(tiny_checkpoint, cluster.url, upload_dir, redis_cluster=True,
                                          lease_s=10.0)).start()
    try:
        video = write_video(video_dir / "cluster-failover.mp4", seconds=4, fps=2, seed=503)
        video_id = hashlib.sha256(video.read_bytes()).hexdigest()
        keys = server.services.store.keys  # type: ignore[attr-defined]
        release = hold(server)
        assert post(server, video).status_code == 202
        master = cluster.master_of(keys.lease(video_id))
        started = time.monotonic()
        master.kill()
        release.set()
        assert wait_until(lambda: promoted(cluster, keys.lease(video_id), master), 30)
        failed_over = time.monotonic() - started
        status = server.wait_ready(video_id, timeout=60)
        outcome_at = time.monotonic() - started
        if status["status"] != "ready":
            assert post(server, video).status_code in (200, 202)
            status = server.wait_ready(video_id, timeout=60)
        assert status["status"] == "ready"
        answered = ask(server, video_id, stream=False)
        assert answered.status_code == 200 and answered.json()["compression"]["frames_sampled"] == 4
        with server.client() as client:
            assert client.get("/readyz").status_code == 200
        with capsys.disabled():
            print(f"\nfailover timeline: master :{master.port} killed at 0.0 s, its replica promoted by "
                  f"{failed_over:.1f} s, the job {status['status']} at {outcome_at:.1f} s")
        assert list(upload_dir.iterdir()) == []

        # The whole cluster down, then back (empty: no persistence): 503s meanwhile, then it
        # serves again without a restart.
        cluster.stop()
        with server.client() as client:
            assert client.get("/readyz").status_code == 503
            refused = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())})
            assert refused.status_code == 503 and refused.headers["retry-after"]
        for node in cluster.nodes:
            node.start()
        cluster.wait_healthy()
        assert wait_until(lambda: server.client().get("/readyz").status_code == 200, 30)
        assert post(server, video).status_code == 202
        assert server.wait_ready(video_id, timeout=60)["status"] == "ready"
        assert list(upload_dir.iterdir()) == []
    finally:
        server.stop()
        cluster.stop()

