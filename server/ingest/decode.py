"""Exact 1-fps decoding, fast.

A first pass reads the packets only (no decoding) to learn every frame's timestamp and
where the keyframes are. From the timestamps alone we know exactly which frames are
sampled (the first at or after each whole second, as `models.vision.frames`). Then only the
groups of pictures that hold a sampled frame are decoded, each from its keyframe and
only as far as its last sampled frame, and only sampled frames are converted to RGB.
Non-reference H.264 pictures that are not sampled are never handed to the decoder
(nothing is predicted from them). With dense keyframes that decodes about one frame per
second; with sparse ones runs of GOPs are decoded in parallel threads, each with its own
demuxer, opened once and reused from run to run (FFmpeg's decoding and colour conversion
release the GIL, so workers scale with cores). A run's frames wait for the consumer in a
channel bounded in bytes, so memory stays bounded whatever the GOP length and resolution.
When one worker would decode nearly every GOP anyway, one sequential pass is used.
Every frame comes out at the first frame's size (the probed one), as live segments do:
a recording whose resolution changes mid-stream (two encoders' MPEG-TS concatenated)
still stacks into one batch.
"""

from __future__ import annotations

import bisect
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from models.arithmetic import FrameSampler, SamplingMode
from models.vision.frames import Frame
from server.ingest.channel import Channel
from server.ingest.errors import DecodeTimeout, NotAVideo, VideoTooLong
from server.ingest.probe import VideoInfo, open_video

TARGETS_PER_RUN = 24  # sampled frames a run gathers before a new one may start
SEEK_COST_FRAMES = 8  # a seek costs about as much as decoding this many frames
RUN_BYTES = 256 << 20  # decoded frames a run may hold ahead of the consumer


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


def sampled_pts(index: PacketIndex, mode: SamplingMode = "exact", fps: float = 1.0) -> list[int]:
    """The sampled frames' timestamps: the plain sampler's rule over the packet index
    (presentation order), so both give the same frames."""
    sampler = FrameSampler(mode, fps)
    return [p for p in index.pts if sampler.take(p * index.time_base)]


def plan_runs(index: PacketIndex, targets: list[int]) -> list[Run]:
    """Group sampled frames into runs decoded from one seek. A run goes on through the
    next keyframe when the frames in between cost less than a seek, and only while it is
    short enough to leave work for other threads."""
    runs: list[Run] = []
    last_gop = -2
    for target in targets:
        gop = bisect.bisect_right(index.keyframes, target) - 1
        start = index.keyframes[gop] if gop > 0 else None  # the first GOP: read from the start, no seek
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


def h264_length_size(extradata: bytes | None) -> int | None:
    """NAL length prefix size of AVCC-framed H.264 (MP4, Matroska), None for Annex B."""
    if not extradata or extradata[0] != 1 or len(extradata) < 5:
        return None
    return (extradata[4] & 3) + 1


def is_disposable_h264(data: memoryview, length_size: int) -> bool:
    """Whether a packet holds a non-reference picture (nal_ref_idc 0 on its first slice):
    no other picture is predicted from it, so not decoding it changes no other frame."""
    pos = 0
    while pos + length_size < len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        header = data[pos + length_size]
        if 1 <= header & 0x1F <= 5:  # a coded slice
            return header >> 5 == 0
        pos += length_size + size
    return False


class Demuxer:
    """One open file and its decoder, reused run after run: opening a long MP4 parses its
    sample tables again (8 ms for an hour of 30 fps), which costs more than the run's decoding."""

    def __init__(self, path: Path, info: VideoInfo, threads: int) -> None:
        self.path, self.info, self.threads = path, info, threads
        self.container: av.container.InputContainer | None = None
        self.used = False
        # Colour conversion on this thread: a fresh converter per frame would start a pool of
        # threads per frame, and the workers are the parallelism.
        self.to_rgb = av.video.reformatter.VideoReformatter()

    def _open(self) -> av.container.InputContainer:
        if self.container is None:
            self.container = open_video(self.path, self.info.container)
            stream = self.container.streams.video[0]
            stream.thread_count = self.threads
            if self.threads > 1:
                stream.thread_type = "AUTO"
        return self.container

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None
            self.used = False

    def pictures(self, run: Run, deadline: float) -> Iterator[tuple[int, np.ndarray]]:
        """The run's sampled frames, decoding from its keyframe only what they depend on:
        non-reference H.264 pictures that are not sampled are never handed to the decoder."""
        if run.start is None and self.used:
            self.close()  # back to the very first frame: a fresh open, not a seek
        container = self._open()
        stream = container.streams.video[0]
        codec = stream.codec_context
        length_size = h264_length_size(codec.extradata) if self.info.codec == "h264" else None
        if run.start is not None:
            container.seek(run.start, stream=stream, backward=True, any_frame=False)
        self.used = True
        want = set(run.targets)
        order = iter(run.targets)
        last = run.targets[-1]
        for packet in container.demux(stream):
            if time.monotonic() > deadline:
                raise DecodeTimeout("decoding took longer than the limit")
            if (length_size and packet.pts not in want and packet.size
                    and is_disposable_h264(memoryview(packet), length_size)):
                continue
            for frame in codec.decode(packet if packet.size else None):
                if frame.pts in want:
                    if frame.pts != next(order):  # the seek landed past a sampled frame (a spliced MPEG-TS)
                        raise DecodeError("a sampled frame came out of its run out of order")
                    want.discard(frame.pts)
                    yield frame.pts, self.to_rgb.reformat(frame, format="rgb24", width=self.info.width,
                                                          height=self.info.height, threads=1).to_ndarray()
                    if not want:
                        return
                elif frame.pts is not None and frame.pts > last:
                    raise DecodeError(f"{len(want)} sampled frames did not come out of their run")
        if want:
            raise DecodeError(f"{len(want)} sampled frames did not come out of their run")


def decode_plain(path: Path, info: VideoInfo, targets: set[int], after: int | None,
                 deadline: float) -> Iterator[tuple[int, np.ndarray]]:
    """Every frame, in order: the fallback when packet and frame timestamps disagree."""
    with open_video(path, info.container) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if time.monotonic() > deadline:
                raise DecodeTimeout("decoding took longer than the limit")
            if frame.pts in targets and (after is None or frame.pts > after):
                yield frame.pts, frame.to_ndarray(format="rgb24", width=info.width, height=info.height)


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
    sampling: SamplingMode = "exact"
    strategy: str = ""
    frames_decoded_hint: int = 0

    def frames(self) -> Iterator[Frame]:
        deadline = time.monotonic() + self.timeout_s
        index = index_packets(self.path, self.info)
        targets = sampled_pts(index, self.sampling, self.info.fps)
        if not targets:
            raise NotAVideo("the video has no frames")
        if len(targets) > self.max_frames:
            raise VideoTooLong(f"the video has more than {self.max_frames} seconds of frames")
        runs = plan_runs(index, targets)
        self.frames_decoded_hint = frames_to_decode(index, runs)
        # One worker that would decode nearly everything: one pass, no seeks.
        if self.workers == 1 and self.frames_decoded_hint >= 0.8 * len(index.pts):
            runs = [Run(None, targets)]
        self.strategy = "sequential" if len(runs) == 1 else ("parallel" if self.workers > 1 else "gop-skip")
        emitted, last = 0, None
        try:
            for pts, rgb in self._in_order(runs, deadline):
                yield Frame(index=emitted, pts_s=float(pts * index.time_base), rgb=rgb)
                emitted, last = emitted + 1, pts
        except DecodeError:
            # Packet and frame timestamps disagree: decode the rest plainly, in order.
            self.strategy += "+fallback"
            with self.slots:
                for pts, rgb in decode_plain(self.path, self.info, set(targets), last, deadline):
                    yield Frame(index=emitted, pts_s=float(pts * index.time_base), rgb=rgb)
                    emitted += 1

    def _in_order(self, runs: list[Run], deadline: float) -> Iterator[tuple[int, np.ndarray]]:
        if len(runs) == 1 or self.workers == 1:
            demuxer = Demuxer(self.path, self.info, self.workers)
            try:
                for run in runs:
                    with self.slots:
                        yield from demuxer.pictures(run, deadline)
            finally:
                demuxer.close()
            return
        # A demuxer per worker, each taken for a run and handed back after it. Each run's
        # frames wait in a channel of their own, bounded in bytes whatever the GOP length.
        idle: queue.SimpleQueue[Demuxer] = queue.SimpleQueue()
        demuxers = [Demuxer(self.path, self.info, 1) for _ in range(self.workers)]
        for demuxer in demuxers:
            idle.put(demuxer)
        per_run = RUN_BYTES // max(1, self.info.width * self.info.height * 3)

        def collect(run: Run, out: Channel) -> None:
            if out.closed.is_set():  # the consumer left before this run started
                return
            demuxer = idle.get()
            try:
                with self.slots:
                    out.fill(demuxer.pictures(run, deadline))
            finally:
                idle.put(demuxer)

        pending: list[Channel] = []
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="longvu-decode") as pool:
                try:
                    for run in runs:
                        pending.append(Channel(per_run))
                        pool.submit(collect, run, pending[-1])
                        if len(pending) > self.workers:
                            yield from pending.pop(0).drain()
                    while pending:
                        yield from pending.pop(0).drain()
                finally:
                    for channel in pending:
                        channel.close()
        finally:
            for demuxer in demuxers:
                demuxer.close()
