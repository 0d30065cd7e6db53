"""Where a live stream's frames come from: one interface, `LiveSource`, with two
implementations (`server.live.hls`, `server.live.ffmpeg`) that `server.live.open_source`
picks by the URL's scheme when the stream is created."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from models.vision.frames import Frame


@dataclass(frozen=True)
class Piece:
    """Frames that arrived (perhaps none), and how far the source's live edge is."""

    frames: list[Frame]
    edge_s: float  # stream seconds the source has made available so far


@dataclass(frozen=True)
class Resume:
    """Where a follower that takes a stream over picks it up: the stream clock goes on from
    `clock_s`, at the live edge (what came meanwhile is a gap)."""

    clock_s: float
    frames_sampled: int
    position: int | None = None  # the source's own place: an HLS media sequence number


class LiveSource(Protocol):
    async def open(self) -> None:
        """Reach the source once (the URL's errors come back to the request that made the
        stream); raises an IngestError."""

    def pieces(self) -> AsyncIterator[Piece]:
        """Frames as they come; ends with the stream (HLS EXT-X-ENDLIST, end of file);
        raises an IngestError (StreamGone after LONGVU_STREAM_GONE_S of failure)."""

    def resume_point(self) -> Resume:
        """Where another follower would go on from now."""

    async def aclose(self) -> None: ...
