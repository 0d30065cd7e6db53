"""An RTSP, RTMP or SRT stream read by FFmpeg (through PyAV) on a thread of its own, its
frames sampled at 1 fps on the stream clock (seconds since its first frame, going on
from a taken-over stream's clock). A read that fails is opened again until the source
has given nothing for LONGVU_STREAM_GONE_S."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from fractions import Fraction

import av

from models.arithmetic import FrameSampler
from models.vision.frames import Frame, frame_time
from server.ingest.errors import StreamGone
from server.live.source import Piece, Resume
from server.settings import Settings

log = logging.getLogger("longvu.live")
PIECE_FRAMES = 4  # sampled frames handed on together
QUEUE = 64  # pieces waiting for the follower; the reader waits beyond
Put = Callable[[Piece | Exception | None], None]


class FfmpegSource:
    def __init__(self, url: str, settings: Settings, resume: Resume | None = None) -> None:
        self.url, self.settings = url, settings
        self.clock_s = resume.clock_s if resume else 0.0
        self.sampled = resume.frames_sampled if resume else 0
        self.sampler = FrameSampler("exact", 1.0)
        self.sampler.next_second = int(self.clock_s)
        self.stop = threading.Event()

    async def open(self) -> None:
        """FFmpeg opens the URL on the reading thread: its errors end the stream as `failed`."""

    def resume_point(self) -> Resume:
        return Resume(self.clock_s, self.sampled)

    def _options(self) -> dict[str, str]:
        timeout_us = str(int(self.settings.url_read_timeout_s * 1_000_000))
        return {"rw_timeout": timeout_us, "timeout": timeout_us}

    def _read(self, put: Put) -> None:
        """The reading thread: opens the URL (again after a failure), decodes, samples."""
        last_frame = time.monotonic()  # the source was last known alive
        while not self.stop.is_set():
            sampled = self.sampled
            try:
                with av.open(self.url, options=self._options(), timeout=self.settings.url_read_timeout_s) as container:
                    self._decode(container, put)
                    if not self.stop.is_set():
                        put(None)  # the end of the stream
                    return
            except (av.FFmpegError, OSError) as exc:
                if self.sampled > sampled:
                    last_frame = time.monotonic()  # it gave frames until it failed
                elif time.monotonic() - last_frame > self.settings.stream_gone_s:
                    put(StreamGone(f"the stream could not be read for {self.settings.stream_gone_s:.0f} s "
                                   f"({type(exc).__name__})"))
                    return
                log.info("live stream %s: %s; opening it again", self.url, exc)
                self.stop.wait(1.0)

    def _decode(self, container: av.container.InputContainer, put: Put) -> None:
        stream = container.streams.video[0]
        time_base = stream.time_base or Fraction(1, 90_000)
        origin = Fraction(self.clock_s)
        first: Fraction | None = None
        size: tuple[int, int] | None = None
        frames: list[Frame] = []
        for frame in container.decode(stream):
            if self.stop.is_set():
                return
            t = frame_time(frame, time_base)
            if t is None:
                continue
            first = t if first is None else first
            at = origin + (t - first)
            self.clock_s = float(at)
            if not self.sampler.take(at):
                continue
            size = size or (frame.width, frame.height)
            frames.append(Frame(self.sampled, float(at), frame.to_ndarray(format="rgb24", width=size[0],
                                                                            height=size[1])))
            self.sampled += 1
            if len(frames) == PIECE_FRAMES:
                put(Piece(frames, float(at)))
                frames = []
        if frames:
            put(Piece(frames, self.clock_s))

    async def pieces(self) -> AsyncIterator[Piece]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Piece | Exception | None] = asyncio.Queue(QUEUE)

        def put(item: Piece | Exception | None) -> None:
            """Waits while the follower is behind, never past the stream's stop."""
            try:
                future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            except RuntimeError:  # the loop is closed: the server is gone
                return
            while not self.stop.is_set():
                try:
                    future.result(timeout=0.5)
                    return
                except concurrent.futures.TimeoutError:
                    continue
            future.cancel()

        reader = threading.Thread(target=self._read, args=(put,), name="longvu-live-ffmpeg", daemon=True)
        reader.start()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.stop.set()

    async def aclose(self) -> None:
        self.stop.set()
