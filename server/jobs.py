"""Background ingest jobs: one per video at a time (a lease in the store), with progress.

The lease, renewed while the job runs, is what makes single flight work across
replicas, and its expiry is what stops a crashed job from leaving a video in
`processing` for ever: a `processing` status with no lease reads as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from models.model import LongVU
from models.vision.encode import BATCH_BYTES, DeviceStep, encode_video
from models.vision.encoded import EncodedVideo
from models.vision.frames import Frame
from models.vision.tower_steps import TimedSteps
from server.cache.store import Store
from server.errors import ApiError, CacheUnavailable, failure
from server.ingest.decode import Decoder
from server.ingest.intake import Received
from server.ingest.probe import VideoInfo
from server.ingest.read_ahead import read_ahead
from server.metrics import Metrics
from server.settings import Settings

log = logging.getLogger("longvu.jobs")
T = TypeVar("T")
STALE = "the ingest job stopped without finishing; send the video again"
PROGRESS_INTERVAL_S = 0.5
LOG_INTERVAL_S = 10.0  # a progress line in the server log for long ingests
READ_AHEAD_BYTES = BATCH_BYTES  # decoded frames waiting for the towers: about one batch


def ready_status(video_id: str, encoded: EncodedVideo, size: int, strategy: str, created: float) -> dict:
    return {
        "id": video_id,
        "status": "ready",
        "progress": 1.0,
        "duration_s": encoded.duration_s,
        "width": encoded.width,
        "height": encoded.height,
        "frames_sampled": encoded.frames_sampled,
        "frames_cached": encoded.frames_cached,
        "rows_cached": encoded.rows_cached,
        "bytes": size,
        "decode_strategy": strategy,
        "created_at": created,
        "updated_at": time.time(),
    }


def live_progress(progress: dict, duration: float, shown: float) -> dict:
    """The status fields of a running job: stage, counts, seconds done, an ETA from the
    rate so far. Progress never goes back."""
    pts, elapsed = progress["pts"], time.monotonic() - progress["started"]
    fraction = max(shown, min(0.99, pts / duration)) if duration > 0 else shown
    rate = pts / elapsed if elapsed > 0 else 0.0
    return {
        "stage": "encoding" if progress["encoded"] else "decoding",
        "progress": round(fraction, 4),
        "frames_decoded": progress["decoded"],
        "frames_encoded": progress["encoded"],
        "frames_survived": progress["survived"],
        "seconds_done": round(pts, 3),
        "eta_s": round((duration - pts) / rate, 1) if rate > 0 and duration > pts else None,
    }


def log_progress(video_id: str, progress: dict, duration: float) -> None:
    elapsed = time.monotonic() - progress["started"]
    log.info("ingest %s: %.0f of %.0f s of video done, %d frames through the towers, %d under the DINO "
             "threshold, %.1fx realtime", video_id[:12], progress["pts"], duration, progress["encoded"],
             progress["survived"], progress["pts"] / max(elapsed, 1e-9))


class JobCancelled(Exception):
    """The job lost its lease, or its video was deleted: another owner (or nobody) has it."""


@dataclass
class Job:
    lease: str  # the lease's value while this job holds it: this process's owner id, then the job's own
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: dict = field(default_factory=lambda: {"pts": 0.0, "decoded": 0, "encoded": 0, "survived": 0,
                                                    "started": time.monotonic()})


class JobRunner:
    def __init__(
        self, model: LongVU, store: Store, settings: Settings, metrics: Metrics, device_step: DeviceStep
    ) -> None:
        self.model, self.store, self.settings, self.metrics = model, store, settings, metrics
        self.device_step = device_step
        self.tower_steps = TimedSteps(settings.ingest_step_ms / 1000)  # shared: timings hold for every job
        self.owner = uuid.uuid4().hex
        self.decoder_slots = threading.BoundedSemaphore(settings.decoder_threads)
        # Jobs wait on the device and the decoder: their own threads, not the shared pool's.
        self.executor = ThreadPoolExecutor(settings.max_jobs, thread_name_prefix="longvu-ingest")
        self.jobs: dict[str, Job] = {}
        self.live: set[str] = set()  # lease tokens of this process's jobs, from before they take it
        self.tasks: set[asyncio.Task] = set()

    async def status(self, video_id: str) -> dict | None:
        status = await self.store.get_status(video_id)
        if status and status["status"] == "processing" and not await self.store.lease_held(video_id):
            # A job writes its last status before it lets the lease go: read it again, or a
            # job that finished between the two reads would look lost.
            status = await self.store.get_status(video_id)
            if status and status["status"] == "processing":
                status = dict(status, status="failed", error=STALE, error_code="job_lost")
        if status and status["status"] == "ready" and not await self.store.has_tokens(video_id):
            return None  # the tokens were evicted or expired: the video must be sent again
        return status

    async def _lease(self, video_id: str, token: str) -> bool:
        """Take the video's lease: free, or an orphan (this process's from a job that is
        gone, say across a Redis restart, or anyone's that missed two renewals)."""
        lease_s = self.settings.lease_s
        if await self.store.acquire_lease(video_id, token, lease_s):
            return True
        info = await self.store.lease_info(video_id)
        if info is None:
            return await self.store.acquire_lease(video_id, token, lease_s)
        holder, left = info
        if holder in self.live:  # a job of ours, starting or running: never an orphan
            return False
        orphan = holder.partition("/")[0] == self.owner or left < lease_s / 3
        if orphan:
            log.warning("taking over the orphaned lease of video %s (held by %s, %.1f s left)", video_id[:12],
                        holder, left)
        # The orphan may expire between the look and the take: then the lease is free.
        return orphan and (await self.store.take_lease(video_id, holder, token, lease_s)
                           or await self.store.acquire_lease(video_id, token, lease_s))

    async def start(self, received: Received, info: VideoInfo) -> dict | None:
        """Start the job, or return None when another one (here or elsewhere) holds the lease
        or has just finished the video."""
        video_id = received.video_id
        if len(self.jobs) >= self.settings.max_jobs and video_id not in self.jobs:
            self.metrics.rejected.labels("jobs_full").inc()
            raise ApiError(503, "busy", "too many videos are being processed; try again shortly", {"Retry-After": "10"})
        job, status = Job(lease=f"{self.owner}/{uuid.uuid4().hex[:12]}"), None
        self.live.add(job.lease)  # from now on its lease, once taken, is never an orphan here
        try:
            status = await self._claim(video_id, job, info)
        finally:
            if status is None:
                self.live.discard(job.lease)
        if status is None:
            return None
        self.jobs[video_id] = job
        task = asyncio.create_task(self._run(received, info, status, job))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return status

    async def _claim(self, video_id: str, job: Job, info: VideoInfo) -> dict | None:
        """The lease and a `processing` status for the job, or None (someone else has the
        video, or a job just finished it)."""
        if not await self._lease(video_id, job.lease):
            return None
        if await self.store.has_tokens(video_id):  # a job that held the lease until now finished it
            await self._release(video_id, job.lease)
            return None
        status = {
            "id": video_id, "status": "processing", "stage": "queued", "progress": 0.0, "duration_s": info.duration_s,
            "width": info.width, "height": info.height, "created_at": time.time(), "updated_at": time.time(),
        }
        try:
            written = await self.store.put_status(video_id, status, job.lease)
        except CacheUnavailable:
            await self._release(video_id, job.lease)
            raise
        return status if written else None  # not written: deleted or taken over in between

    def cancel(self, video_id: str) -> None:
        """Stop this process's job for the video, if any (DELETE)."""
        job = self.jobs.get(video_id)
        if job is not None:
            job.cancel.set()

    async def _release(self, video_id: str, token: str) -> None:
        try:
            await self.store.release_lease(video_id, token)
        except CacheUnavailable:
            log.warning("could not release the lease of a job; it expires by itself")

    async def _retrying(self, write: Callable[[], Awaitable[T]]) -> T:
        """A job's last writes outlast a short cache outage (a Redis restart, say)."""
        deadline = time.monotonic() + self.settings.lease_s
        while True:
            try:
                return await write()
            except CacheUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _run(self, received: Received, info: VideoInfo, status: dict, job: Job) -> None:
        video_id = received.video_id
        decoder = Decoder(
            received.path, info, self.decoder_slots, self.settings.decoder_threads,
            self.settings.decode_timeout_s, int(self.settings.max_duration_s) + 2, self.settings.sampling,
        )
        quiet = asyncio.Event()
        keeper = asyncio.create_task(self._keep_alive(video_id, status, job, info.duration_s, quiet))

        async def silence_keeper() -> None:
            """Its last progress write lands before the final status: a `processing` written
            after `ready` or `failed` would outlive the lease and read as a lost job."""
            quiet.set()
            await asyncio.gather(keeper, return_exceptions=True)

        self.metrics.jobs_in_progress.inc()
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        log.info("ingest %s: started, %.0f s of %dx%d %s", video_id[:12], info.duration_s, info.width, info.height,
                 info.codec)
        try:
            encoded = await loop.run_in_executor(self.executor, self._encode, decoder, job, info)
            data = await loop.run_in_executor(self.executor, encoded.to_bytes)
            ready = ready_status(video_id, encoded, len(data), decoder.strategy, status["created_at"])
            await silence_keeper()
            if not await self._retrying(lambda: self.store.finish(video_id, job.lease, data, ready)):
                raise JobCancelled
            took = time.perf_counter() - started
            log.info("ingest %s: ready in %.1f s (%.1fx realtime): %d frames sampled, %d survived DINO, "
                     "%d cached (%d SVA rows), %s decode", video_id[:12], took, encoded.duration_s / max(took, 1e-9),
                     encoded.frames_sampled, encoded.frames_survived, encoded.frames_cached, encoded.rows_cached,
                     decoder.strategy)
            self.metrics.encode_time.observe(took)
            self.metrics.video_seconds.inc(encoded.duration_s)
            self.metrics.frames_cached.inc(encoded.frames_cached)
            self.metrics.frames_kept.inc(encoded.frames_cached)
            self.metrics.videos_encoded.labels("ready").inc()
        except JobCancelled:
            log.info("job for video %s stopped: deleted, or its lease was lost", video_id[:12])
            self.metrics.videos_encoded.labels("cancelled").inc()
        except Exception as exc:  # every failure ends as a `failed` status the client can read
            code, message = failure(exc, "ingest_failed", "the video could not be processed", log)
            self.metrics.videos_encoded.labels("failed").inc()
            await silence_keeper()
            failed = dict(status, status="failed", error=message, error_code=code, updated_at=time.time())
            try:  # not when the video was deleted or taken over meanwhile
                await self._retrying(lambda: self.store.put_status(video_id, failed, job.lease))
            except CacheUnavailable:
                log.warning("could not record a failed job; its lease expiry will show it")
        finally:
            # Forgotten first: a re-upload right after a `failed` status starts a job of its
            # own (this job's lease is then an orphan of this process, taken over).
            if self.jobs.get(video_id) is job:
                del self.jobs[video_id]
            self.live.discard(job.lease)
            keeper.cancel()
            self.metrics.jobs_in_progress.dec()
            received.path.unlink(missing_ok=True)
            await self._release(video_id, job.lease)

    def _encode(self, decoder: Decoder, job: Job, info: VideoInfo) -> EncodedVideo:
        decode_s = 0.0
        progress = job.progress

        def timed() -> Iterator[Frame]:
            nonlocal decode_s
            frames = decoder.frames()
            while True:
                if job.cancel.is_set():
                    raise JobCancelled
                started = time.perf_counter()
                frame = next(frames, None)
                decode_s += time.perf_counter() - started
                if frame is None:
                    return
                self.metrics.frames_decoded.inc()
                progress["decoded"] += 1
                yield frame

        def device_step(work: Callable[[], T]) -> T:
            if job.cancel.is_set():
                raise JobCancelled
            return self.device_step(work)

        encoded = encode_video(
            self.model, read_ahead(timed(), READ_AHEAD_BYTES), size_quirk=self.settings.size_quirk,
            duration_s=info.duration_s or None,
            progress=lambda pts, encoded, survived: progress.update(pts=pts, encoded=encoded, survived=survived),
            device_step=device_step, tower_steps=self.tower_steps, preprocess=self.settings.preprocess,
        )
        self.metrics.decode_time.observe(decode_s)
        return encoded

    async def _keep_alive(self, video_id: str, status: dict, job: Job, duration: float,
                          quiet: asyncio.Event) -> None:
        """Renews the lease and writes progress until the job is cancelled or `quiet` is set."""
        last_renew = last_log = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(quiet.wait(), PROGRESS_INTERVAL_S)
            if quiet.is_set():
                return
            if time.monotonic() - last_log >= LOG_INTERVAL_S:
                last_log = time.monotonic()
                log_progress(video_id, job.progress, duration)
            try:
                if time.monotonic() - last_renew > self.settings.lease_s / 3:
                    if not await self.store.renew_lease(video_id, job.lease, self.settings.lease_s):
                        log.warning("job for video %s lost its lease; stopping it", video_id[:12])
                        job.cancel.set()
                        return
                    last_renew = time.monotonic()
                update = live_progress(job.progress, duration, status["progress"])
                if any(status.get(k) != v for k, v in update.items()):
                    status.update(update, updated_at=time.time())
                    if not await self.store.put_status(video_id, status, job.lease):
                        log.info("job for video %s: deleted or taken over; stopping it", video_id[:12])
                        job.cancel.set()
                        return
            except CacheUnavailable:
                log.warning("cache unreachable while a job runs; progress not recorded")

    async def shutdown(self) -> None:
        for job in self.jobs.values():
            job.cancel.set()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)
