"""HLS playlists and segments: the variant nearest 720p, sequence numbers, the stream clock
across discontinuities and gaps, MPEG-TS and fMP4, and the address policy on segments."""

from __future__ import annotations

import asyncio
import re

import pytest

from server.ingest.errors import BadPlaylist, UrlNotAllowed
from server.live import playlist
from server.live.hls import HlsSource
from server.live.segments import SegmentFrames
from server.live.source import Resume
from server.settings import Settings
from tests.live import HlsServer, encode_segment, split_init

MASTER = """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360
low/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080
high/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720
mid/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3000000
unknown/index.m3u8
"""


def test_the_variant_nearest_720p_is_followed() -> None:
    parsed = playlist.parse(MASTER, "https://cdn.example/live/master.m3u8")
    assert parsed.is_variant
    assert playlist.variant_url(parsed) == "https://cdn.example/live/mid/index.m3u8"
    no_720 = MASTER.replace("RESOLUTION=1280x720", "RESOLUTION=960x540")
    assert playlist.variant_url(playlist.parse(no_720, "https://cdn.example/m.m3u8")).endswith("mid/index.m3u8")


def test_media_playlist_sequence_numbers_and_ending() -> None:
    text = ("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:41\n#EXT-X-MAP:URI=\"init.mp4\"\n"
            "#EXTINF:6.0,\na.m4s\n#EXT-X-DISCONTINUITY\n#EXTINF:5.5,\nhttps://other.example/b.m4s\n#EXT-X-ENDLIST\n")
    media = playlist.media(playlist.parse(text, "https://cdn.example/live/index.m3u8"))
    assert [(s.sequence, s.url, s.duration_s) for s in media.segments] == [
        (41, "https://cdn.example/live/a.m4s", 6.0), (42, "https://other.example/b.m4s", 5.5)]
    assert media.segments[0].init_url == "https://cdn.example/live/init.mp4" and media.ended
    assert media.target_duration_s == 6.0


@pytest.mark.parametrize("text", ["<html>not a playlist</html>", "#EXTM3U\n#EXTINF:abc,\nx.ts\n"])
def test_what_is_not_a_playlist_is_refused(text: str) -> None:
    with pytest.raises(BadPlaylist):
        playlist.media(playlist.parse(text, "https://cdn.example/x.m3u8"))


def test_segments_sit_on_the_stream_clock() -> None:
    """Each segment starts where the playlist's durations put it, whatever its own
    timestamps say: a discontinuity (timestamps restart) and a gap shift nothing after."""
    frames = SegmentFrames(Settings())
    first = frames.decode(encode_segment(0, 8, 2, 64, 48, fmp4=False, seed=0), 0.0)
    restarted = frames.decode(encode_segment(0, 8, 2, 64, 48, fmp4=False, seed=1), 4.0)  # new timestamps
    after_gap = frames.decode(encode_segment(900, 8, 2, 64, 48, fmp4=False, seed=2), 16.0)
    assert [f.pts_s for f in first + restarted + after_gap] == [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19]
    assert [f.index for f in first + restarted + after_gap] == list(range(12))


def test_fmp4_segments_and_a_variant_switch_keep_the_first_size() -> None:
    frames = SegmentFrames(Settings())
    init, media = split_init(encode_segment(0, 4, 2, 64, 48, fmp4=True, seed=0))
    assert [f.pts_s for f in frames.decode(init + media, 0.0)] == [0.0, 1.0]
    init, media = split_init(encode_segment(4, 4, 2, 96, 72, fmp4=True, seed=1))
    bigger = frames.decode(init + media, 2.0)
    assert [f.pts_s for f in bigger] == [2.0, 3.0] and bigger[0].rgb.shape == (48, 64, 3)


def test_a_segment_at_a_private_address_is_refused(hls_server: HlsServer) -> None:
    """The playlist is read (given here); its segment URI points at loopback, which the
    address policy refuses when the segment is fetched."""
    writer, url = hls_server.stream()
    writer.stop()
    source = HlsSource(url, Settings(url_allow_private=False))
    text = writer.playlist.read_text()
    source.first = playlist.media(playlist.parse(text, url))

    async def follow() -> None:
        try:
            async for _ in source.pieces():
                pass
        finally:
            await source.aclose()

    with pytest.raises(UrlNotAllowed, match="private"):
        asyncio.run(follow())


def follow_all(source: HlsSource) -> list[float]:
    async def run() -> list[float]:
        times = []
        try:
            async for piece in source.pieces():
                times += [f.pts_s for f in piece.frames]
        finally:
            await source.aclose()
        return times
    return asyncio.run(run())


def test_missed_segments_are_a_gap_on_the_clock(hls_server: HlsServer) -> None:
    """A follower that falls behind a sliding window takes what is listed; the clock counts
    the missed segments by the target duration."""
    writer, url = hls_server.stream(window=2)
    writer.stop()
    source = HlsSource(url, Settings(url_allow_private=True))
    source.first = playlist.media(playlist.parse(writer.playlist.read_text(), url))  # segment 0 only
    for _ in range(4):
        writer.write_segment()  # 5 written; the playlist now lists 3 and 4
    writer.end()
    assert follow_all(source) == [0.0, 1.0, 2.0, 3.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0]


def test_a_takeover_starts_at_the_live_edge(hls_server: HlsServer) -> None:
    """The previous follower stopped after segment 0 (its clock at 4 s); the new one starts
    with the newest segment listed, the segments between counted as a gap."""
    writer, url = hls_server.stream(window=3)
    writer.stop()
    for _ in range(4):
        writer.write_segment()
    writer.end()
    source = HlsSource(url, Settings(url_allow_private=True), Resume(clock_s=4.0, frames_sampled=4, position=1))
    assert follow_all(source) == [16.0, 17.0, 18.0, 19.0]
    assert source.frames.sampled == 8 and source.resume_point() == Resume(20.0, 8, 5)


@pytest.mark.parametrize(("extinf", "why"), [("inf", "inf"), ("nan", "nan"), ("1e308", "1e+308"), ("0", "0.0"),
                                             ("-1", "-1.0"), ("60.5", "60.5")])
def test_a_segment_duration_is_finite_positive_and_bounded(extinf: str, why: str) -> None:
    text = f"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n#EXTINF:{extinf},\nb.ts\n"
    with pytest.raises(BadPlaylist, match=re.escape(f"#EXTINF duration {why} is not above 0 and at most 60 s")):
        playlist.media(playlist.parse(text, "https://cdn.example/x.m3u8"))


def test_the_target_duration_is_at_least_a_second() -> None:
    zero = playlist.media(playlist.parse("#EXTM3U\n#EXT-X-TARGETDURATION:0\n#EXTINF:1,\na.ts\n", "https://c.example/x"))
    assert zero.target_duration_s == 1.0
    none = playlist.media(playlist.parse("#EXTM3U\n#EXTINF:3.5,\na.ts\n#EXTINF:2,\nb.ts\n", "https://c.example/x"))
    assert none.target_duration_s == 3.5  # the longest segment's, as players take it
    with pytest.raises(BadPlaylist, match="TARGETDURATION"):
        playlist.media(playlist.parse("#EXTM3U\n#EXT-X-TARGETDURATION:99999\n#EXTINF:1,\na.ts\n", "https://c.x/y"))


def test_a_sequence_leap_is_a_gap_of_at_most_an_hour() -> None:
    assert playlist.gap_s(3, 4.0) == 12.0
    assert playlist.gap_s(10**15, 4.0) == playlist.MAX_LEAP_S == 3600.0
    assert playlist.gap_s(-5, 4.0) == 0.0
