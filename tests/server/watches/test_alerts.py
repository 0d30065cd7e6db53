"""A stream's watches on each new window, with injected scores: thresholds, the cooldown in
stream time, alerts written with the status before any webhook, a deleted watch silent."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from models.language.yes_no import question
from models.vision.encoded import EncodedVideo
from server.cache.memory_store import MemoryStore
from server.metrics import Metrics
from server.watches.alerts import StreamWatches

STREAM = "s" * 64


class Hooks:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send(self, watch_id: str, url: str, secret: str, body: bytes) -> None:
        self.sent.append((watch_id, json.loads(body)))


def window(index: int) -> EncodedVideo:
    """The index-th 16-second window of a stream, 4 frames held."""
    made = EncodedVideo.made_up(4, 4, 8, every_s=4.0)
    return replace(made, timestamps=made.timestamps + 16 * index, duration_s=16.0 * (index + 1))


def test_thresholds_cooldown_and_deletion_with_injected_scores() -> None:
    async def main() -> tuple[list[list[dict]], Hooks, list[list[tuple[float, float, str]]]]:
        store, hooks, metrics = MemoryStore(1 << 20, 60), Hooks(), Metrics()
        assert await store.acquire_lease(STREAM, "me", 60)
        status: dict = {"id": STREAM, "status": "live", "kind": "stream"}
        assert await store.put_status(STREAM, status, "me")
        watches = {"low": dict(threshold=0.0, cooldown_s=40.0, webhook={"url": "http://x/", "secret": "s" * 16}),
                   "mid": dict(threshold=0.6, cooldown_s=0.0, webhook=None),
                   "high": dict(threshold=1.0, cooldown_s=0.0, webhook=None)}
        for name, fields in watches.items():
            stored = {"id": name, "query": f"q-{name}", "window_s": 32.0 if name == "mid" else 16.0, **fields}
            assert await store.put_watch(STREAM, name, json.dumps(stored).encode(), 8)
        scores = iter([0.5, 0.7, 0.99] * 3 + [0.5, 0.5])  # low, mid, high per window
        asked: list[list[tuple[float, float, str]]] = []

        async def score(prompts: list[tuple[EncodedVideo, str]]) -> list[float]:
            asked.append([(float(v.timestamps[0]), float(v.timestamps[-1]), q) for v, q in prompts])
            return [next(scores) for _ in prompts]

        published: list[list[dict]] = []

        async def publish() -> None:
            published.append(list(status.get("alerts", [])))

        watching = StreamWatches(STREAM, status, store, score, hooks, metrics, publish)  # type: ignore[arg-type]
        parts: list[EncodedVideo] = []
        for i in range(4):
            if i == 3:
                assert await store.delete_watch(STREAM, "high")
                assert await store.delete_watch(STREAM, "mid")
            parts.append(window(i))
            await watching.on_window(list(parts), 0.0)
        return published, hooks, asked

    published, hooks, asked = asyncio.run(main())
    alerts = published[-1]
    # low alerts at 16 s, then waits 40 s of stream time: 32 and 48 are too soon, 64 is not.
    assert [(a["watch_id"], a["end_s"]) for a in alerts if a["watch_id"] == "low"] == [("low", 16.0), ("low", 64.0)]
    assert [a["end_s"] for a in alerts if a["watch_id"] == "mid"] == [16.0, 32.0, 48.0]  # no cooldown
    assert not [a for a in alerts if a["watch_id"] == "high"]  # 0.99 < 1.0
    assert [a["seq"] for a in alerts] == list(range(1, len(alerts) + 1))
    assert [(w, body["end_s"]) for w, body in hooks.sent] == [("low", 16.0), ("low", 64.0)]
    assert "seq" not in hooks.sent[0][1] and hooks.sent[0][1]["query"] == "q-low"
    # mid scores the last 32 s (two windows' frames), the others the last 16; each its own question.
    second = {q: (a, b) for a, b, q in asked[1]}
    assert second[question("q-mid")] == (0.0, 28.0) and second[question("q-low")] == (16.0, 28.0)
    assert [q for _, _, q in asked[3]] == [question("q-low")]  # deleted watches are not scored
