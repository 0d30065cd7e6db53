"""HLS playlists read with the `m3u8` library: a master playlist's variant nearest 720p,
a media playlist's segments with their sequence numbers, durations and init sections
(fMP4). Discontinuities need nothing here: each segment is placed on the stream clock by
the durations before it (`server.live.segments`)."""

from __future__ import annotations

from dataclasses import dataclass

import m3u8

from server.ingest.errors import BadPlaylist

TARGET_HEIGHT = 720


@dataclass(frozen=True)
class Segment:
    sequence: int  # EXT-X-MEDIA-SEQUENCE numbering: what is new, what was missed
    url: str
    duration_s: float
    init_url: str | None  # EXT-X-MAP: the fMP4 initialisation section


@dataclass(frozen=True)
class MediaPlaylist:
    segments: list[Segment]
    target_duration_s: float
    ended: bool  # EXT-X-ENDLIST: no segment will be added


def parse(text: str, url: str) -> m3u8.M3U8:
    if not text.lstrip().startswith("#EXTM3U"):
        raise BadPlaylist("the URL is not an HLS playlist (no #EXTM3U)")
    try:
        return m3u8.loads(text, uri=url)
    except Exception as exc:  # the library raises assorted errors on malformed input
        raise BadPlaylist(f"the playlist could not be read: {exc}") from exc


def variant_url(master: m3u8.M3U8) -> str:
    """The variant whose height is nearest 720 (the higher bandwidth on a tie; variants
    without a resolution come last)."""
    def distance(playlist: m3u8.Playlist) -> tuple[float, float]:
        info = playlist.stream_info
        height = info.resolution[1] if info.resolution else None
        return (abs(height - TARGET_HEIGHT) if height else float("inf"), -(info.bandwidth or 0))

    if not master.playlists:
        raise BadPlaylist("the master playlist lists no variant stream")
    return min(master.playlists, key=distance).absolute_uri


def media(playlist: m3u8.M3U8) -> MediaPlaylist:
    segments = []
    for number, segment in enumerate(playlist.segments):
        if segment.duration is None or segment.duration < 0:
            raise BadPlaylist("a segment has no valid #EXTINF duration")
        init = segment.init_section
        segments.append(Segment(
            sequence=(playlist.media_sequence or 0) + number, url=segment.absolute_uri,
            duration_s=float(segment.duration),
            init_url=init.absolute_uri if init is not None else None,
        ))
    target = float(playlist.target_duration or max((s.duration_s for s in segments), default=1.0))
    return MediaPlaylist(segments, max(target, 0.1), bool(playlist.is_endlist))
