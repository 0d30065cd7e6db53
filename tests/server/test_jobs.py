"""JobRunner.status while a job ends (a `processing` status with no lease at all is
tests/server/test_ingest.py's), and a job's last writes against its progress writes."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from models.model import LongVU
from server import jobs
from server.cache.memory_store import MemoryStore
from server.ingest.intake import Received
from server.ingest.probe import probe
from server.jobs import JobRunner
from server.metrics import Metrics
from server.settings import Settings

VIDEO = "a" * 64
LEASE = "owner/job"


class FinishesBetweenReads(MemoryStore):
    """A store whose job finishes (status `ready`, lease let go) right after the first status
    read: the interleaving two awaits on one event loop allow."""

    def __init__(self) -> None:
        super().__init__(max_bytes=1 << 20, ttl_s=60)
        self.reads = 0

    async def get_status(self, video_id: str) -> dict | None:
        status = await super().get_status(video_id)
        self.reads += 1
        if self.reads == 1:
            await self.finish(video_id, LEASE, b"tokens", {"id": video_id, "status": "ready"})
            await self.release_lease(video_id, LEASE)
        return status


def test_a_job_that_finishes_between_the_reads_reads_as_ready() -> None:
    async def scenario() -> dict | None:
        store = FinishesBetweenReads()
        assert await store.acquire_lease(VIDEO, LEASE, 60)
        assert await store.put_status(VIDEO, {"id": VIDEO, "status": "processing"}, LEASE)
        return await JobRunner(None, store, Settings(), Metrics(), lambda work: work()).status(VIDEO)  # type: ignore[arg-type]

    status = asyncio.run(scenario())
    assert status is not None and status["status"] == "ready", status



class SlowReplies(MemoryStore):
    """A store whose status writes land at once and whose replies come late, as a Redis far
    away: a progress write can still be in flight when the job writes its final status."""

    def __init__(self) -> None:
        super().__init__(max_bytes=1 << 24, ttl_s=60)
        self.progress_writes = 0

    async def put_status(self, video_id: str, status: dict, owner: str) -> bool:
        written = await super().put_status(video_id, status, owner)
        self.progress_writes += status["status"] == "processing"
        await asyncio.sleep(0.05)
        return written

    async def finish(self, video_id: str, owner: str, tokens: bytes, status: dict) -> bool:
        done = await super().finish(video_id, owner, tokens, status)
        await asyncio.sleep(0.05)
        return done


def test_a_progress_write_never_lands_after_the_final_status(model: LongVU, short_video: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Progress is written every few milliseconds here, so one is in flight whenever the job
    finishes; were it to land after `ready`, the video would read as a lost job once the
    lease is let go."""
    monkeypatch.setattr(jobs, "PROGRESS_INTERVAL_S", 0.005)
    settings = Settings(device="cpu", tmp_dir=tmp_path)
    path = tmp_path / "upload.mp4"
    shutil.copy(short_video, path)

    async def scenario() -> tuple[dict | None, int]:
        store = SlowReplies()
        runner = JobRunner(model, store, settings, Metrics(), lambda work: work())
        assert await runner.start(Received(path, VIDEO, path.stat().st_size), probe(path, settings))
        await asyncio.gather(*runner.tasks)
        return await runner.status(VIDEO), store.progress_writes

    status, progress_writes = asyncio.run(scenario())
    assert progress_writes > 1
    assert status is not None and status["status"] == "ready", status
