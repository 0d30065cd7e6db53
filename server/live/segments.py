"""A live stream's segments decoded, one after another, into frames sampled at 1 fps on the
stream's own clock: seconds since its first segment. Each segment is placed at its start
on that clock (the sum of the playlist durations before it), so discontinuities (new
timestamps, a new encoder) and gaps (segments missed) shift nothing after them."""

from __future__ import annotations

import io
from fractions import Fraction

import av

from models.arithmetic import FrameSampler
from models.vision.frames import Frame, frame_time
from server.ingest.errors import IngestError, NotAVideo, VideoTooLarge
from server.ingest.probe import ALLOWED_CODECS
from server.settings import Settings

TS_PACKET = 188


def container_of(data: bytes) -> str:
    """MPEG-TS or fragmented MP4 (an init section before the media), by their first bytes."""
    if len(data) > TS_PACKET and data[0] == 0x47 and data[TS_PACKET] == 0x47:
        return "mpegts"
    if data[4:8] in (b"ftyp", b"styp", b"moof", b"moov"):
        return "mov"
    raise NotAVideo("a segment is neither MPEG-TS nor fragmented MP4")


class SegmentFrames:
    """Blocking (decoding): call `decode` from a worker thread, one segment at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sampler = FrameSampler("exact", 1.0)
        self.sampled = 0
        self.size: tuple[int, int] | None = None  # the first frame's; a variant switch is scaled to it

    def decode(self, data: bytes, start_s: float) -> list[Frame]:
        """The sampled frames of one segment (its init section first, for fMP4) that
        starts `start_s` seconds into the stream."""
        try:
            with av.open(io.BytesIO(data), format=container_of(data)) as container:
                if not container.streams.video:
                    raise NotAVideo("a segment has no video stream")
                return self._frames(container, container.streams.video[0], Fraction(start_s))
        except IngestError:
            raise
        except (av.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as exc:
            raise NotAVideo(f"a segment cannot be decoded ({type(exc).__name__})") from exc

    def _frames(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                start: Fraction) -> list[Frame]:
        codec = stream.codec_context.name
        if codec not in ALLOWED_CODECS:
            raise NotAVideo(f"video codec {codec} is not supported")
        width, height = stream.codec_context.width, stream.codec_context.height
        if width > self.settings.max_width or height > self.settings.max_height:
            raise VideoTooLarge(f"{width}x{height} exceeds {self.settings.max_width}x{self.settings.max_height}")
        time_base = stream.time_base or Fraction(1, 90_000)
        frames: list[Frame] = []
        first: Fraction | None = None
        for frame in container.decode(stream):
            t = frame_time(frame, time_base)
            if t is None:
                continue
            first = t if first is None else first
            at = start + (t - first)
            if not self.sampler.take(at):
                continue
            if self.size is None:
                self.size = (frame.width, frame.height)
            w, h = self.size
            rgb = frame.to_ndarray(format="rgb24", width=w, height=h)
            frames.append(Frame(index=self.sampled, pts_s=float(at), rgb=rgb))
            self.sampled += 1
        return frames
