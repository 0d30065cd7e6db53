"""A followed stream's watches scored on each new window, and the alerts they raise.

The follower hands every encoded window to `StreamWatches` and goes on: a task of its own
scores the stream's watches (read from the store, so a watch added on any replica counts) on
the latest `window_s` seconds, all in one `score` call (the engine's packed prefill). A
score at or above a watch's threshold alerts unless the watch alerted less than
`cooldown_s` of stream time before. Alerts go into the stream's status (its recent alerts,
numbered, and each watch's last alert) in a write that holds the stream's lease, so the
`alert` events every replica serves come from the store, a follower that lost the stream
writes nothing, and a replica that takes the stream over goes on from the status: no alert
is sent twice for one window. Webhooks are queued once the write is done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

from models.language.yes_no import question
from models.vision.encoded import EncodedVideo
from server.cache.store import Store
from server.live.follower import Stopped
from server.metrics import Metrics
from server.watches.webhooks import Webhooks

log = logging.getLogger("longvu.watches")
MAX_WINDOW_S = 300.0  # the longest window a watch may score; the follower keeps that much at hand
RECENT_ALERTS = 64  # alerts kept in the status for the events of every replica
ENCODE_WINDOW_S = 16.0

# Scores of (video, query) prompts, in order.
Score = Callable[[list[tuple[EncodedVideo, str]]], Awaitable[list[float]]]


def recent_video(parts: list[EncodedVideo]) -> EncodedVideo:
    """The last windows as one video, pruned as the stream is by its newest window (a
    stream's windows are pruned from a point on, and the earlier ones keep their mask)."""
    return EncodedVideo.joined(parts, prune_from=0 if parts[-1].pruned else math.inf)  # type: ignore[arg-type]


class StreamWatches:
    def __init__(self, stream_id: str, status: dict, store: Store, score: Score, webhooks: Webhooks,
                 metrics: Metrics, publish: Callable[[], Awaitable[None]]) -> None:
        self.stream_id, self.status, self.store, self.score = stream_id, status, store, score
        self.webhooks, self.metrics, self.publish = webhooks, metrics, publish
        self._recent: deque[EncodedVideo] = deque(maxlen=math.ceil(MAX_WINDOW_S / ENCODE_WINDOW_S) + 1)
        self._windows: asyncio.Queue[tuple[list[EncodedVideo], float]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def finish(self, timeout_s: float) -> None:
        """The stream ended: score the windows still queued (its last one), for at most `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._windows.join()
        except TimeoutError:
            log.warning("stream %s: its last windows were not scored in time", self.stream_id[:12])

    def window_encoded(self, window: EncodedVideo) -> None:
        """From the follower, after the window is in the store: queued, never waited on."""
        self._recent.append(window)
        self._windows.put_nowait((list(self._recent), time.perf_counter()))

    async def _run(self) -> None:
        while True:
            parts, encoded_at = await self._windows.get()
            try:
                await self.on_window(parts, encoded_at)
            except Stopped:
                return  # this follower lost the stream: the replica that has it scores its windows
            except Exception as exc:  # a failed scoring skips this window's alerts; the stream goes on
                log.warning("stream %s: scoring its watches failed: %s", self.stream_id[:12], exc)
            finally:
                self._windows.task_done()

    async def on_window(self, parts: list[EncodedVideo], encoded_at: float) -> None:
        watches = [json.loads(raw) for raw in (await self.store.get_watches(self.stream_id)).values()]
        if not watches:
            return
        video = recent_video(parts)
        end = parts[-1].duration_s
        spans = [(max(0.0, end - w["window_s"]), end) for w in watches]
        scores = await self.score([(video.window(a, b), question(w["query"])) for w, (a, b) in zip(watches, spans,
                                                                                                    strict=True)])
        self.metrics.watch_scores.inc(len(watches))
        alerts = [self._alert(w, a, b, s) for w, (a, b), s in zip(watches, spans, scores, strict=True)
                  if s >= w["threshold"] and self._cooled(w, b)]
        if not alerts:
            return
        await self.publish()  # with the lease: raises Stopped when this follower lost the stream
        for watch, alert in alerts:
            self.metrics.watch_alerts.inc()
            self.metrics.watch_alert_delay.observe(time.perf_counter() - encoded_at)
            if watch.get("webhook"):
                body = json.dumps({k: v for k, v in alert.items() if k != "seq"}).encode()
                self.webhooks.send(watch["id"], watch["webhook"]["url"], watch["webhook"]["secret"], body)

    def _cooled(self, watch: dict, end_s: float) -> bool:
        last = self.status.get("watch_alerts", {}).get(watch["id"])
        return last is None or end_s - last >= watch["cooldown_s"]

    def _alert(self, watch: dict, start_s: float, end_s: float, score: float) -> tuple[dict, dict]:
        seq = self.status.get("alert_seq", 0) + 1
        alert = {"seq": seq, "watch_id": watch["id"], "query": watch["query"], "start_s": round(start_s, 3),
                 "end_s": round(end_s, 3), "score": score, "at": time.time()}
        self.status["alert_seq"] = seq
        self.status.setdefault("watch_alerts", {})[watch["id"]] = end_s
        self.status["alerts"] = [*self.status.get("alerts", []), alert][-RECENT_ALERTS:]
        return watch, alert
