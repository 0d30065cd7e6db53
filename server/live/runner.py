"""The live streams of this process: created by POST /streams, stopped by DELETE, taken
over from a replica that died. One follower per stream across replicas: it holds the
stream's lease in the store while it runs. Every replica looks, every half lease, for a
live stream whose lease has expired and takes it over at the live edge."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from models.model import LongVU
from models.vision.encode import BatchEncoder, DeviceStep
from models.vision.tower_steps import TowerSteps
from server.cache.store import Store
from server.errors import ApiError, CacheUnavailable, failure
from server.ingest.connect import Resolver, system_resolver
from server.ingest.errors import IngestError
from server.live.follower import Follower, Stopped
from server.live.open_source import open_source
from server.live.source import LiveSource, Resume
from server.metrics import Metrics
from server.settings import Settings
from server.tenants import scoped
from server.watches.alerts import Score, StreamWatches
from server.watches.webhooks import Webhooks

log = logging.getLogger("longvu.live")
T = TypeVar("T")


@dataclass
class Followed:
    task: asyncio.Task
    # Set once the task ends: its window encode, on the executor, takes no further device
    # step (a cancelled task does not stop a thread).
    stopped: threading.Event


class StreamRunner:
    def __init__(self, model: LongVU, store: Store, settings: Settings, metrics: Metrics, device_step: DeviceStep,
                 tower_steps: TowerSteps, score: Score | None, webhooks: Webhooks,
                 resolve: Resolver = system_resolver) -> None:
        self.model, self.store, self.settings, self.metrics = model, store, settings, metrics
        self.device_step, self.tower_steps, self.resolve = device_step, tower_steps, resolve
        self.score, self.webhooks = score, webhooks  # watches: no score, no watches (LONGVU_LLM_URL)
        self.owner = uuid.uuid4().hex
        self.executor = ThreadPoolExecutor(max(1, settings.max_streams_live), thread_name_prefix="longvu-live")
        self.followed: dict[str, Followed] = {}
        self.lags: dict[str, float] = {}
        self.watcher: asyncio.Task | None = None

    def start_watching(self) -> None:
        """Take over streams whose follower is gone (from the app's lifespan)."""
        self.watcher = asyncio.create_task(self._watch())

    def _room(self) -> bool:
        return len(self.followed) < self.settings.max_streams_live

    async def start(self, url: str, retention_s: float, tenant: str) -> dict:
        """A new stream followed from its start, in `tenant`'s namespace; the URL's errors
        come back at once."""
        if not self._room():
            self.metrics.rejected.labels("streams_full").inc()
            raise ApiError(503, "busy", f"this server follows {self.settings.max_streams_live} live streams "
                           "already (LONGVU_MAX_STREAMS_LIVE); try again later", {"Retry-After": "30"})
        source = open_source(url, self.settings, resolve=self.resolve)
        try:
            await source.open()
        except BaseException:
            await source.aclose()
            raise
        stream_id = scoped(tenant, secrets.token_hex(32))  # random: the same URL twice is two streams
        lease = f"{self.owner}/{uuid.uuid4().hex[:12]}"
        now = time.time()
        status = {
            "id": stream_id, "status": "live", "kind": "stream", "progress": 0.0, "seconds_live": 0.0, "lag_s": 0.0,
            "frames_sampled": 0, "frames_cached": 0, "retention_s": retention_s, "created_at": now,
            "updated_at": now, "windows": [], "stream_url": url, "resume": None,
        }
        try:
            if not await self.store.acquire_lease(stream_id, lease, self.settings.lease_s):
                raise ApiError(500, "internal", "a new stream's id was taken")
            await self.store.put_status(stream_id, status, lease)
            await self.store.add_stream(stream_id)
        except BaseException:
            await source.aclose()
            raise
        self._follow(stream_id, source, status, lease)
        return status

    def _follow(self, stream_id: str, source: LiveSource, status: dict, lease: str) -> None:
        stopped = threading.Event()

        def device_step(work: Callable[[], T]) -> T:
            if stopped.is_set():
                raise Stopped
            return self.device_step(work)

        encoder = BatchEncoder(self.model, size_quirk=self.settings.size_quirk, device_step=device_step,
                               tower_steps=self.tower_steps, preprocess=self.settings.preprocess)
        follower = Follower(stream_id, source, status, self.store, encoder, self.executor, self.metrics, lease,
                            self._lag)
        watches = None
        if self.score is not None:
            watches = StreamWatches(stream_id, status, self.store, self.score, self.webhooks, self.metrics,
                                    follower.publish)
            follower.on_window = watches.window_encoded
        task = asyncio.create_task(self._run(follower, watches))
        self.followed[stream_id] = Followed(task, stopped)
        self.metrics.streams_live.inc()

    async def _run(self, follower: Follower, watches: StreamWatches | None) -> None:
        stream_id, status = follower.stream_id, follower.status
        keeper = asyncio.create_task(self._keep_lease(stream_id, follower.lease))
        if watches is not None:
            watches.start()
        log.info("stream %s: following", stream_id[:12])
        ended = True
        try:
            await follower.run()
            if watches is not None:
                await watches.finish(self.settings.lease_s)
            log.info("stream %s: ended after %.0f s; ready", stream_id[:12], status["seconds_live"])
        except Stopped:
            log.info("stream %s: deleted, or taken over elsewhere; stopped", stream_id[:12])
        except asyncio.CancelledError:
            ended = False  # stopped here (DELETE, shutdown): another replica may go on
            raise
        except Exception as exc:  # every failure ends as a `failed` status the client can read
            code, message = failure(exc, "stream_failed", "the stream could not be followed", log)
            log.warning("stream %s: failed: %s", stream_id[:12], message)
            status.update(status="failed", error=message, error_code=code, updated_at=time.time())
            try:
                await self.store.put_status(stream_id, status, follower.lease)
            except CacheUnavailable:
                log.warning("could not record a failed stream")
        finally:
            keeper.cancel()
            if watches is not None:
                watches.stop()
            self.followed.pop(stream_id).stopped.set()
            self.metrics.streams_live.dec()
            self._lag(stream_id, None)
            await follower.source.aclose()
            await self._settle(stream_id, follower.lease, ended)

    def _lag(self, stream_id: str, lag: float | None) -> None:
        if lag is None:
            self.lags.pop(stream_id, None)
        else:
            self.lags[stream_id] = lag
        self.metrics.stream_lag.set(max(self.lags.values(), default=0.0))

    async def _settle(self, stream_id: str, lease: str, ended: bool) -> None:
        try:
            if ended:
                await self.store.remove_stream(stream_id)
            await self.store.release_lease(stream_id, lease)
        except CacheUnavailable:
            log.warning("could not release a stream's lease; it expires by itself")

    async def _keep_lease(self, stream_id: str, lease: str) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                if not await self.store.renew_lease(stream_id, lease, self.settings.lease_s):
                    log.warning("stream %s lost its lease; stopping", stream_id[:12])
                    self.stop(stream_id)
                    return
            except CacheUnavailable:
                log.warning("cache unreachable while following a stream; lease not renewed")

    def stop(self, stream_id: str) -> None:
        """Stop following the stream here (DELETE), if this process follows it."""
        followed = self.followed.get(stream_id)
        if followed is not None:
            followed.task.cancel()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, self.settings.lease_s / 2))
            try:
                for stream_id in await self.store.streams():
                    if stream_id not in self.followed and self._room():
                        await self._take_over(stream_id)
            except CacheUnavailable:
                log.warning("cache unreachable; live streams not checked for takeover")
            except Exception:
                log.exception("checking live streams for takeover failed")

    async def _take_over(self, stream_id: str) -> None:
        if await self.store.lease_held(stream_id):
            return
        status = await self.store.get_status(stream_id)
        if status is None or status.get("status") != "live":
            await self.store.remove_stream(stream_id)
            return
        lease = f"{self.owner}/{uuid.uuid4().hex[:12]}"
        if not await self.store.acquire_lease(stream_id, lease, self.settings.lease_s):
            return
        resume = Resume(**status["resume"]) if status.get("resume") else None
        log.warning("stream %s: its follower is gone; taking it over at the live edge", stream_id[:12])
        try:
            source = open_source(status["stream_url"], self.settings, resume, self.resolve)
        except IngestError:
            await self.store.release_lease(stream_id, lease)
            raise
        self._follow(stream_id, source, status, lease)

    async def shutdown(self) -> None:
        """Stop following; the leases are released, so another replica takes the streams over."""
        if self.watcher is not None:
            self.watcher.cancel()
        tasks = [f.task for f in self.followed.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *([self.watcher] if self.watcher else []), return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)
