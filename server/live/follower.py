"""One live stream followed: its source's frames gathered into DINO windows of 16, each
complete window encoded (towers, pruning, fusion: the device steps an upload's job takes)
and appended to the store at once, with the status; windows older than the retention
leave in the same write. The stream is pruned, window by window, once it has as many
sampled frames as a file would be pruned at, so asks see what a file of the same frames
gives them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import asdict, dataclass

import torch

from kernels.dino_prune import WINDOW
from models.arithmetic import always_prune_from
from models.vision.encode import BatchEncoder
from models.vision.encoded import EncodedVideo
from models.vision.frames import Frame
from server.cache.store import Store
from server.live.source import LiveSource
from server.metrics import Metrics

log = logging.getLogger("longvu.live")


class Stopped(Exception):
    """The stream was deleted, or its lease taken: this follower writes nothing more."""


def window_name(first_index: int) -> str:
    return f"{first_index:012d}"  # sorts as the windows come


@dataclass
class Follower:
    stream_id: str
    source: LiveSource
    status: dict  # the stream's status, written with every window and every piece
    store: Store
    encoder: BatchEncoder
    executor: Executor
    metrics: Metrics
    lease: str
    on_lag: Callable[[str, float], None]  # the runner's: the gauge shows the largest lag
    on_window: Callable[[EncodedVideo], None] = lambda _: None  # each window once stored (its watches)

    def __post_init__(self) -> None:
        self.prune_from = always_prune_from(self.encoder.model.config)
        self.encoded_until_s = 0.0

    async def run(self) -> None:
        """Until the stream ends (then `ready`); raises the source's IngestError or Stopped."""
        pending: list[Frame] = []
        async for piece in self.source.pieces():
            pending.extend(piece.frames)
            self.status["seconds_live"] = round(piece.edge_s, 3)
            while len(pending) >= WINDOW:
                await self._encode(pending[:WINDOW])
                del pending[:WINDOW]
            await self._publish()
        if pending:  # the last, partial window
            await self._encode(pending)
        self.status.update(status="ready", progress=1.0, duration_s=self.status["seconds_live"])
        await self._publish()

    async def publish(self) -> None:
        """The status as it is now (with the stream's lease: Stopped once it is lost)."""
        await self._publish()

    def _lag(self) -> float:
        return max(0.0, self.status["seconds_live"] - self.encoded_until_s)

    def _refresh(self) -> None:
        lag = self._lag()
        self.status.update(lag_s=round(lag, 3), updated_at=time.time(), resume=asdict(self.source.resume_point()))
        self.on_lag(self.stream_id, lag)

    async def _publish(self, add: dict[str, bytes] | None = None) -> None:
        """The status, with the windows added and those past the retention dropped, at once."""
        oldest = self.status["seconds_live"] - self.status["retention_s"]
        windows = self.status["windows"]
        drop = [w[0] for w in windows if w[2] < oldest]  # a window leaves once its last frame is too old
        self.status.update(windows=[w for w in windows if w[2] >= oldest])
        self.status["frames_cached"] = sum(w[3] for w in self.status["windows"])
        self._refresh()
        if add or drop:
            written = await self.store.update_windows(self.stream_id, self.lease, add or {}, drop, self.status)
        else:
            written = await self.store.put_status(self.stream_id, self.status, self.lease)
        if not written:
            raise Stopped

    async def _encode(self, frames: list[Frame]) -> None:
        sampled = self.status["frames_sampled"]
        pruning = sampled + len(frames) >= self.prune_from
        window = await asyncio.get_running_loop().run_in_executor(self.executor, self._window, frames, pruning)
        data = await asyncio.to_thread(window.to_bytes)
        name = window_name(frames[0].index)
        self.encoded_until_s = frames[-1].pts_s + 1.0  # a sampled frame stands for its second
        self.status["windows"].append([name, frames[0].pts_s, frames[-1].pts_s, window.frames_cached])
        self.status.update(frames_sampled=sampled + len(frames), width=window.width, height=window.height)
        await self._publish({name: data})
        self.on_window(window)
        self.metrics.frames_cached.inc(window.frames_cached)
        self.metrics.video_seconds.inc(len(frames))

    @torch.inference_mode()
    def _window(self, frames: list[Frame], pruning: bool) -> EncodedVideo:
        """Blocking (the device steps wait for the engine): on the executor."""
        out = self.encoder.encode(frames, pruning)
        return EncodedVideo(
            features=out.features, frame_indices=torch.tensor([f.index for f in out.frames], dtype=torch.int64),
            timestamps=torch.tensor([f.pts_s for f in out.frames], dtype=torch.float64),
            dino_keep=torch.tensor(out.keep, dtype=torch.bool), pruned=pruning, frames_sampled=len(frames),
            frames_survived=out.survived, width=self.encoder.width, height=self.encoder.height,
            duration_s=frames[-1].pts_s + 1.0, size_quirk=self.encoder.size_quirk,
        )
