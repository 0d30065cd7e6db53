"""Is it a video we will decode? Container sniffed from its first bytes and opened with
that demuxer alone (so playlists, concat scripts and the like never reach FFmpeg),
then the codec, geometry, duration and stream count are checked against the limits."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from models.vision.frames import average_fps
from server.ingest.errors import IngestError, NotAVideo, VideoTooLarge, VideoTooLong
from server.settings import Settings

ALLOWED_CODECS = {"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mpeg2video", "mjpeg", "prores"}
# Only local reads: FFmpeg never opens a URL or another file on our behalf.
OPEN_OPTIONS = {"protocol_whitelist": "file"}


@dataclass(frozen=True)
class VideoInfo:
    container: str  # the PyAV demuxer used for every later open
    codec: str
    width: int
    height: int
    duration_s: float
    time_base: Fraction
    fps: float = 1.0  # the stream's average rate (the reference sampling steps by it)


TS_PACKET, M2TS_PACKET = 188, 192  # MPEG-TS; Blu-ray/AVCHD's M2TS: a 4-byte timestamp before each packet


def sniff(path: Path) -> str | None:
    with path.open("rb") as f:
        head = f.read(3 * M2TS_PACKET + 8)
    for size, lead in ((TS_PACKET, 0), (M2TS_PACKET, 4)):  # three sync bytes in step
        if len(head) >= 2 * size + lead + 1 and all(head[lead + k * size] == 0x47 for k in range(3)):
            return "mpegts"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def open_video(path: Path, container: str) -> av.container.InputContainer:
    return av.open(str(path), format=container, options=OPEN_OPTIONS)


def probe(path: Path, settings: Settings) -> VideoInfo:
    container_name = sniff(path)
    if container_name is None:
        raise NotAVideo("not a video in a supported container (MP4/MOV, Matroska/WebM, AVI, MPEG-TS/M2TS)")
    try:
        with open_video(path, container_name) as container:
            if len(container.streams) > settings.max_streams:
                raise NotAVideo(f"more than {settings.max_streams} streams")
            if not container.streams.video:
                raise NotAVideo("the file has no video stream")
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            if codec not in ALLOWED_CODECS:
                raise NotAVideo(f"video codec {codec} is not supported")
            width, height = stream.codec_context.width, stream.codec_context.height
            if width <= 0 or height <= 0:
                raise NotAVideo("the video has no picture size")
            if width > settings.max_width or height > settings.max_height:
                raise VideoTooLarge(f"{width}x{height} exceeds {settings.max_width}x{settings.max_height}")
            time_base = stream.time_base or Fraction(1, 1_000_000)
            fps = average_fps(stream)
            if stream.duration:
                duration = float(stream.duration * time_base)
            else:
                duration = (container.duration or 0) / av.time_base
            if duration > settings.max_duration_s:
                raise VideoTooLong(f"the video is longer than {settings.max_duration_s:.0f} s")
            if next(container.decode(stream), None) is None:
                raise NotAVideo("the video has no decodable frames")
    except IngestError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise NotAVideo(f"the video cannot be decoded ({type(exc).__name__})") from exc
    return VideoInfo(container_name, codec, width, height, duration, time_base, fps)
