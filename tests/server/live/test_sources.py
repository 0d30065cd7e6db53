"""The source for a URL by its scheme, and the FFmpeg source's frames on the stream clock
(read here from a file: FFmpeg opens an rtsp:// URL through the same call)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.ingest.errors import StreamGone, UrlNotAllowed
from server.live.ffmpeg import FfmpegSource
from server.live.hls import HlsSource
from server.live.open_source import open_source
from server.live.source import Resume
from server.settings import Settings


def test_sources_by_scheme() -> None:
    settings = Settings(stream_allowed_hosts="camera.local, Encoder.example")  # type: ignore[arg-type]
    assert isinstance(open_source("https://cdn.example/live.m3u8", settings), HlsSource)
    assert isinstance(open_source("rtsp://camera.local:8554/cam1", settings), FfmpegSource)
    assert isinstance(open_source("srt://encoder.example:9000", settings), FfmpegSource)
    with pytest.raises(UrlNotAllowed, match="LONGVU_STREAM_ALLOWED_HOSTS"):
        open_source("rtmp://elsewhere.example/live", settings)
    with pytest.raises(UrlNotAllowed):
        open_source("file:///etc/passwd", settings)


def frames_of(source: FfmpegSource) -> list[tuple[int, float]]:
    async def run() -> list[tuple[int, float]]:
        seen = []
        async for piece in source.pieces():
            seen += [(f.index, f.pts_s) for f in piece.frames]
            assert piece.edge_s >= seen[-1][1]
        return seen
    return asyncio.run(run())


def test_ffmpeg_frames_on_the_stream_clock(short_video: Path) -> None:
    """12 s at 2 fps: one frame a second from 0; taken over, the clock and the count go on."""
    assert frames_of(FfmpegSource(str(short_video), Settings())) == [(i, float(i)) for i in range(12)]
    resumed = FfmpegSource(str(short_video), Settings(), Resume(clock_s=100.0, frames_sampled=7))
    assert frames_of(resumed) == [(7 + i, 100.0 + i) for i in range(12)]
    assert resumed.resume_point().frames_sampled == 19


def test_an_unreadable_stream_is_gone(tmp_path: Path) -> None:
    source = FfmpegSource(str(tmp_path / "missing.ts"), Settings(stream_gone_s=0.5))
    with pytest.raises(StreamGone, match="could not be read"):
        frames_of(source)
