"""Exact 1-fps decoding, fast.

A first pass reads the packets only (no decoding) to learn every frame's timestamp and
where the keyframes are. From the timestamps alone we know exactly which frames are
sampled (the first at or after each whole second, as `models.frames`). Then only the
groups of pictures that hold a sampled frame are decoded, each from its keyframe and
only as far as its last sampled frame, and only sampled frames are converted to RGB.
With dense keyframes that decodes about one frame per second; with sparse ones runs of
whole GOPs are decoded in parallel threads, each with its own demuxer. When one worker
would decode nearly every frame anyway, a single sequential decode with FFmpeg's frame
threading is used instead.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from models.frames import Frame
from server.errors import ApiError
from server.ingest.probe import VideoInfo, open_video

TARGETS_PER_RUN = 24  # sampled frames a run gathers before a new one may start
SEEK_COST_FRAMES = 8  # a seek costs about as much as decoding this many frames


class DecodeError(Exception):
    pass


@dataclass(frozen=True)
class PacketIndex:
    time_base: Fraction
    pts: list[int]  # every frame's presentation timestamp, sorted
    keyframes: list[int]


@dataclass
class Run:
    start: int | None  # keyframe to seek to; None: from the start of the file
    targets: list[int] = field(default_factory=list)


def index_packets(path: Path, info: VideoInfo) -> PacketIndex:
    pts: list[int] = []
    keyframes: list[int] = []
    with open_video(path, info.container) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            pts.append(packet.pts)
            if packet.is_keyframe:
                keyframes.append(packet.pts)
    return PacketIndex(info.time_base, sorted(pts), sorted(keyframes))


def sampled_pts(index: PacketIndex) -> list[int]:
    out, next_second = [], 0
    for p in index.pts:
        t = p * index.time_base
        if t >= next_second:
            out.append(p)
            next_second = math.floor(t) + 1
    return out


def plan_runs(index: PacketIndex, targets: list[int]) -> list[Run]:
    """Group sampled frames into runs decoded from one seek. A run goes on through the
    next keyframe when the frames in between cost less than a seek, and only while it is
    short enough to leave work for other threads."""
    runs: list[Run] = []
    last_gop = -2
    for target in targets:
        gop = bisect.bisect_right(index.keyframes, target) - 1
        start = index.keyframes[gop] if gop >= 0 else None
        if runs and gop == last_gop:
            runs[-1].targets.append(target)
            continue
        if runs and start is not None and len(runs[-1].targets) < TARGETS_PER_RUN:
            between = bisect.bisect_left(index.pts, start) - bisect.bisect_right(index.pts, runs[-1].targets[-1])
            if between <= SEEK_COST_FRAMES:
                runs[-1].targets.append(target)
                last_gop = gop
                continue
        runs.append(Run(start, [target]))
        last_gop = gop
    return runs


def frames_to_decode(index: PacketIndex, runs: list[Run]) -> int:
    total = 0
    for run in runs:
        lo = 0 if run.start is None else bisect.bisect_left(index.pts, run.start)
        total += bisect.bisect_right(index.pts, run.targets[-1]) - lo
    return total


def decode_run(path: Path, info: VideoInfo, run: Run, threads: int, deadline: float) -> list[tuple[int, np.ndarray]]:
    want = set(run.targets)
    last = run.targets[-1]
    out: list[tuple[int, np.ndarray]] = []
    with open_video(path, info.container) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        stream.thread_count = threads
        if run.start is not None:
            container.seek(run.start, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if time.monotonic() > deadline:
                raise ApiError(422, "decode_timeout", "decoding took longer than the limit")
            if frame.pts in want:
                out.append((frame.pts, frame.to_ndarray(format="rgb24")))
                want.discard(frame.pts)
                if not want:
                    break
            elif frame.pts is not None and frame.pts > last:
                break
    if want:
        raise DecodeError(f"{len(want)} sampled frames did not come out of their run")
    return out


def decode_sequential(path: Path, info: VideoInfo, targets: set[int], threads: int, deadline: float,
                      after: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    with open_video(path, info.container) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        for frame in container.decode(stream):
            if time.monotonic() > deadline:
                raise ApiError(422, "decode_timeout", "decoding took longer than the limit")
            if frame.pts in targets and (after is None or frame.pts > after):
                yield frame.pts, frame.to_ndarray(format="rgb24")


@dataclass
class Decoder:
    """Decodes one video's 1-fps frames, holding at most `workers` decoder threads of the
    process-wide `slots` at a time."""

    path: Path
    info: VideoInfo
    slots: threading.BoundedSemaphore
    workers: int
    timeout_s: float
    max_frames: int
    strategy: str = ""
    frames_decoded_hint: int = 0

    def frames(self) -> Iterator[Frame]:
        deadline = time.monotonic() + self.timeout_s
        index = index_packets(self.path, self.info)
        targets = sampled_pts(index)
        if not targets:
            raise ApiError(415, "unsupported_media", "the video has no frames")
        if len(targets) > self.max_frames:
            raise ApiError(413, "too_long", f"the video has more than {self.max_frames} seconds of frames")
        runs = plan_runs(index, targets)
        self.frames_decoded_hint = frames_to_decode(index, runs)
        sequential = self.workers == 1 and self.frames_decoded_hint >= 0.8 * len(index.pts)
        self.strategy = "sequential" if sequential else ("parallel" if self.workers > 1 else "gop-skip")
        pictures = (
            self._sequential(set(targets), deadline, None) if sequential else self._runs(runs, targets, deadline)
        )
        for i, (pts, rgb) in enumerate(pictures):
            yield Frame(index=i, pts_s=float(pts * index.time_base), rgb=rgb)

    def _sequential(self, targets: set[int], deadline: float, after: int | None) -> Iterator[tuple[int, np.ndarray]]:
        with self.slots:
            yield from decode_sequential(self.path, self.info, targets, self.workers, deadline, after)

    def _run(self, run: Run, deadline: float) -> list[tuple[int, np.ndarray]]:
        with self.slots:
            return decode_run(self.path, self.info, run, 1, deadline)

    def _runs(self, runs: list[Run], targets: list[int], deadline: float) -> Iterator[tuple[int, np.ndarray]]:
        last_emitted: int | None = None
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="longvu-decode") as pool:
            pending: list[Future] = []
            queue = iter(runs)
            try:
                for run in queue:
                    pending.append(pool.submit(self._run, run, deadline))
                    if len(pending) > self.workers:
                        for item in pending.pop(0).result():
                            last_emitted = item[0]
                            yield item
                while pending:
                    for item in pending.pop(0).result():
                        last_emitted = item[0]
                        yield item
            except DecodeError:
                # Timestamps from the packets and the decoder disagree: decode the rest in order.
                for future in pending:
                    future.cancel()
                yield from self._sequential(set(targets), deadline, last_emitted)
