"""Watches on a live HLS stream written while the test runs, through the real server and
Redis: alerts as events and as signed webhooks, thresholds, DELETE, limits, a failing
receiver, and a takeover by a second `python -m server` that keeps the watches."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx

from tests.harness import RedisServer, ServerThread
from tests.live import HlsServer
from tests.server.live.test_streams import follow, two_replicas, wait_for
from tests.server.test_ask import metric, sse_events, upload_ready
from tests.videos import write_video
from tests.webhooks import Receiver

SECRET = "watch-secret-0123456789"


def watch(client: httpx.Client, stream_id: str, **body: object) -> httpx.Response:
    return client.post(f"/videos/{stream_id}/watches", json={"query": "a truck at the dock", **body})


class Alerts:
    """The stream's `alert` events, collected on a thread while the test goes on."""

    def __init__(self, server: ServerThread, stream_id: str) -> None:
        self.events: list[dict] = []
        self.client = server.client()
        self.thread = threading.Thread(target=self._read, args=(stream_id,), daemon=True)
        self.thread.start()

    def _read(self, stream_id: str) -> None:
        try:
            with self.client.stream("GET", f"/videos/{stream_id}/events") as response:
                for kind, data in sse_events(response):
                    if kind == "alert":
                        self.events.append(data)
        except httpx.HTTPError:
            pass  # closed by the test

    def of(self, watch_id: str) -> list[dict]:
        return [a for a in self.events if a["watch_id"] == watch_id]

    def wait(self, watch_id: str, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.of(watch_id)) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.of(watch_id)) >= count, self.events
        return self.of(watch_id)

    def close(self) -> None:
        self.client.close()


def test_alerts_as_events_and_signed_webhooks(url_server: ServerThread, hls_server: HlsServer) -> None:
    receiver = Receiver()
    writer, url = hls_server.stream()
    try:
        with url_server.client() as client:
            stream_id = follow(client, url)["id"]
            alerts = Alerts(url_server, stream_id)
            every = watch(client, stream_id, threshold=0, webhook={"url": receiver.url, "secret": SECRET})
            assert every.status_code == 201, every.text
            created = every.json()
            assert created["webhook_url"] == receiver.url and SECRET not in every.text
            assert every.headers["location"] == f"/videos/{stream_id}/watches/{created['id']}"
            never = watch(client, stream_id, threshold=1).json()
            listed = client.get(f"/videos/{stream_id}/watches").json()["watches"]
            assert [w["id"] for w in listed] == [created["id"], never["id"]] and SECRET not in json.dumps(listed)

            got = alerts.wait(created["id"], 3)
            assert [a["end_s"] for a in got] == sorted({a["end_s"] for a in got})  # one per new window
            assert all(a["end_s"] - a["start_s"] == 16 and a["query"] == "a truck at the dock" for a in got)
            assert all(0 <= a["score"] <= 1 and a["at"] > 0 for a in got)
            receiver.wait(lambda bodies: len(bodies) >= 3, timeout=10)
            delivered = [json.loads(b) for b in receiver.verified(SECRET)]
            assert [d["end_s"] for d in delivered[:3]] == [a["end_s"] for a in got[:3]]
            assert alerts.of(never["id"]) == []  # threshold 1: never

            assert client.delete(f"/videos/{stream_id}/watches/{created['id']}").status_code == 204
            assert client.delete(f"/videos/{stream_id}/watches/{created['id']}").status_code == 404
            time.sleep(0.5)  # a window being scored may still alert once
            ended = len(alerts.of(created["id"]))
            wait_for(client, stream_id, lambda s: s["frames_cached"] >= 16 * 6)
            assert len(alerts.of(created["id"])) == ended  # DELETE stopped them
            assert metric(url_server, "longvu_watch_scores_total") >= 6
            assert metric(url_server, "longvu_watch_alerts_total") >= 3
            assert metric(url_server, 'longvu_webhook_deliveries_total{outcome="delivered"}') >= 3
            assert metric(url_server, "longvu_watch_alert_seconds_count") >= 3
            assert client.delete(f"/videos/{stream_id}").status_code == 204
            assert client.get(f"/videos/{stream_id}/watches").status_code == 404
            alerts.close()
    finally:
        writer.stop()
        receiver.stop()


def test_a_failing_receiver_is_retried_while_the_stream_keeps_its_pace(url_server: ServerThread,
                                                                       hls_server: HlsServer) -> None:
    receiver = Receiver(status=500)
    writer, url = hls_server.stream()
    failed = metric(url_server, 'longvu_webhook_deliveries_total{outcome="failed"}')
    try:
        with url_server.client() as client:
            stream_id = follow(client, url)["id"]
            assert watch(client, stream_id, threshold=0, webhook={"url": receiver.url, "secret": SECRET}).status_code \
                == 201
            deadline = time.monotonic() + 60
            while metric(url_server, 'longvu_webhook_deliveries_total{outcome="failed"}') < failed + 1:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert len(receiver.received) >= 3  # three tries for the first alert
            status = wait_for(client, stream_id, lambda s: s["frames_cached"] >= 16 * 4)
            assert status["lag_s"] < 16 * 2  # retries never held the follower up
            client.delete(f"/videos/{stream_id}")
    finally:
        writer.stop()
        receiver.stop()


def test_watch_requests_refused_with_reasons(url_server: ServerThread, hls_server: HlsServer,
                                             video_dir: Path) -> None:
    video_id = upload_ready(url_server, write_video(video_dir / "watch-file.mp4", seconds=3, fps=1, seed=5))
    writer, url = hls_server.stream()
    try:
        with url_server.client() as client:
            not_live = watch(client, video_id)
            assert not_live.status_code == 409 and not_live.json()["error"]["code"] == "not_live"
            assert f"/videos/{video_id}/moments" in not_live.json()["error"]["message"]
            assert watch(client, "0" * 64).status_code == 404
            stream_id = follow(client, url)["id"]
            for body, param in [({"threshold": 2}, "threshold"), ({"query": ""}, "query"),
                                ({"webhook": {"url": "ftp://x/", "secret": SECRET}}, "webhook.url"),
                                ({"webhook": {"url": "http://x/", "secret": "short"}}, "webhook.secret")]:
                refused = watch(client, stream_id, **body)
                assert refused.status_code == 422 and refused.json()["error"]["param"] == param, refused.text
            for _ in range(url_server.services.settings.max_watches):
                assert watch(client, stream_id, threshold=1).status_code == 201
            full = watch(client, stream_id, threshold=1)
            assert full.status_code == 409 and full.json()["error"]["code"] == "too_many_watches"
            assert client.delete(f"/videos/{stream_id}/watches/not-an-id").status_code == 404
            client.delete(f"/videos/{stream_id}")
    finally:
        writer.stop()


def test_a_takeover_keeps_the_watches_and_sends_no_alert_twice(tiny_checkpoint: Path, tmp_path: Path,
                                                               upload_dir: Path, hls_server: HlsServer) -> None:
    """The follower's process is killed; the other replica takes the stream over and scores
    its watches on the windows it encodes: every window alerts once, on one replica."""
    redis_server = RedisServer().start()
    receiver = Receiver()
    first, second = two_replicas(tiny_checkpoint, tmp_path, upload_dir, redis_server.url)
    writer, url = hls_server.stream()
    try:
        with first.client() as client:
            stream_id = follow(client, url)["id"]
            watch_id = watch(client, stream_id, threshold=0,
                             webhook={"url": receiver.url, "secret": SECRET}).json()["id"]
            receiver.wait(lambda bodies: len(bodies) >= 2)
        first.stop()  # SIGKILL
        with second.client() as client:
            before = len(receiver.received)
            receiver.wait(lambda bodies: len(bodies) >= before + 2)
            assert stream_id in second.services.streams.followed
            assert [w["id"] for w in client.get(f"/videos/{stream_id}/watches").json()["watches"]] == [watch_id]
            windows = [json.loads(b)["end_s"] for b in receiver.verified(SECRET)]
            assert len(windows) == len(set(windows))  # no window alerted twice
            assert client.delete(f"/videos/{stream_id}").status_code == 204
    finally:
        first.stop()
        second.stop()
        writer.stop()
        receiver.stop()
        redis_server.stop()




def test_the_last_window_of_an_ended_stream_is_scored(url_server: ServerThread, hls_server: HlsServer) -> None:
    receiver = Receiver()
    writer, url = hls_server.stream()
    try:
        with url_server.client() as client:
            stream_id = follow(client, url)["id"]
            assert watch(client, stream_id, threshold=0, webhook={"url": receiver.url, "secret": SECRET}).status_code \
                == 201
            wait_for(client, stream_id, lambda s: s["seconds_live"] >= 20)
            writer.end()
            ready = wait_for(client, stream_id, lambda s: s["status"] != "live")
            assert ready["status"] == "ready"
            receiver.wait(lambda bodies: any(b["end_s"] == ready["duration_s"] for b in bodies), timeout=10)
            client.delete(f"/videos/{stream_id}")
    finally:
        writer.stop()
        receiver.stop()
