"""HLS playlists read with the `m3u8` library: a master playlist's variant nearest 720p,
a media playlist's segments with their sequence numbers, durations and init sections
(fMP4). Discontinuities need nothing here: each segment is placed on the stream clock by
the durations before it (`server.live.segments`). Every number is bounded (`media`): a
source cannot put inf, NaN or an absurd time on the stream clock, nor have its playlist
reloaded more often than every half second."""

from __future__ import annotations

import math
from dataclasses import dataclass

import m3u8

from server.ingest.errors import BadPlaylist

TARGET_HEIGHT = 720
MIN_TARGET_S = 1.0  # the spec's integer: a target of 0 is read as 1 s
MIN_RELOAD_S = 0.5  # a playlist is reloaded at most twice a second, whatever it or the settings say
MAX_SEGMENT_FACTOR = 10  # a segment may last this many target durations
MAX_SEGMENT_S = 3600.0
MAX_LEAP_S = 3600.0  # the longest gap a media sequence leap puts on the stream clock


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
    """The playlist's numbers bounded, so that no source can put a non-finite or absurd time
    on the stream clock (a status must stay JSON) or make us reload it in a loop."""
    target = target_duration(playlist)
    segments = []
    for number, segment in enumerate(playlist.segments):
        init = segment.init_section
        segments.append(Segment(
            sequence=(playlist.media_sequence or 0) + number, url=segment.absolute_uri,
            duration_s=segment_duration(segment.duration, target),
            init_url=init.absolute_uri if init is not None else None,
        ))
    return MediaPlaylist(segments, target, bool(playlist.is_endlist))


def target_duration(playlist: m3u8.M3U8) -> float:
    """EXT-X-TARGETDURATION, at least 1 s (the spec's integer; 0 would have us reload the
    playlist without pause); without one, the longest segment's, as players do."""
    raw = playlist.target_duration
    if raw is None:
        raw = max((float(s.duration) for s in playlist.segments if _number(s.duration)), default=1.0)
    if not _number(raw) or not 0 <= float(raw) <= MAX_SEGMENT_S:
        raise BadPlaylist(f"#EXT-X-TARGETDURATION {raw} is not a duration of 0 to {MAX_SEGMENT_S:.0f} s")
    return max(MIN_TARGET_S, float(raw))


def segment_duration(raw: object, target: float) -> float:
    """An #EXTINF: finite, positive, at most MAX_SEGMENT_FACTOR targets and an hour."""
    bound = min(MAX_SEGMENT_FACTOR * target, MAX_SEGMENT_S)
    if not _number(raw) or not 0 < float(raw) <= bound:  # type: ignore[arg-type]
        raise BadPlaylist(f"a segment's #EXTINF duration {raw} is not above 0 and at most {bound:g} s "
                          f"({MAX_SEGMENT_FACTOR} target durations, at most an hour)")
    return float(raw)  # type: ignore[arg-type]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def gap_s(missed: int, target: float) -> float:
    """Stream seconds for `missed` segments never seen (a takeover, a media sequence leap):
    at most MAX_LEAP_S, whatever the leap."""
    return min(max(0, missed) * target, MAX_LEAP_S)
