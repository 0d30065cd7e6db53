"""JobRunner.status while a job ends (a `processing` status with no lease at all is
tests/server/test_ingest.py's)."""

from __future__ import annotations

import asyncio

from server.cache.memory_store import MemoryStore
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

