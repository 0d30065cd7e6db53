"""Hostile playlist numbers through the real server, from a loopback origin: non-finite and
huge segment durations, a zero target duration, a media sequence leap. Each ends as a
`bad_playlist` failure (or a bounded gap) whose status still reads back as JSON, and no
playlist makes us reload it more than twice a second."""

from __future__ import annotations

import json
import math
import time

import pytest

from tests.harness import ServerThread
from tests.live import HlsServer
from tests.server.live.test_streams import follow, wait_for

HEAD = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n"


def live_then(hls_server: HlsServer, url_server: ServerThread, rewrite) -> tuple[dict, str, str]:  # type: ignore[no-untyped-def]
    """A stream that goes live on real segments, then its playlist rewritten by `rewrite`
    (given the segment names written so far); returns the status once it is no longer live."""
    writer, url = hls_server.stream()
    with url_server.client() as client:
        stream_id = follow(client, url)["id"]
        wait_for(client, stream_id, lambda s: s["seconds_live"] >= 8)
        writer.stop()
        names = [f"seg{n}.ts" for n in range(writer.written)]
        writer.playlist.write_text(rewrite(names))
        status = wait_for(client, stream_id, lambda s: s["status"] != "live", timeout=30)
        raw = client.get(f"/videos/{stream_id}")
        events = client.get(f"/videos/{stream_id}/events")
        client.delete(f"/videos/{stream_id}")
    assert raw.status_code == 200 and json.loads(raw.text) == status  # strict JSON: no Infinity, no NaN
    assert events.status_code == 200 and "event: failed" in events.text  # the events stream ends readable too
    return status, raw.text, url


@pytest.mark.parametrize("durations", [["inf"], ["nan"], ["1e308", "1e308"], ["-4"], ["0"], ["41"]])
def test_a_bad_segment_duration_fails_the_stream_with_the_reason(url_server: ServerThread, hls_server: HlsServer,
                                                                  durations: list[str]) -> None:
    def rewrite(names: list[str]) -> str:
        lines = [f"#EXTINF:4.000,\n{name}" for name in names] + [f"#EXTINF:{d},\n{names[-1]}" for d in durations]
        return HEAD + "\n".join(lines) + "\n"

    status, raw, _ = live_then(hls_server, url_server, rewrite)
    assert status["status"] == "failed" and status["error_code"] == "bad_playlist", status
    assert "#EXTINF" in status["error"]
    assert "Infinity" not in raw and "NaN" not in raw
    assert all(math.isfinite(v) for v in status.values() if isinstance(v, float))


def test_a_media_sequence_leap_is_a_bounded_gap(url_server: ServerThread, hls_server: HlsServer) -> None:
    """The sequence numbers jump by 10**15 segments (of 4 s): the clock moves by at most an
    hour, and the stream stays readable."""
    writer, url = hls_server.stream()
    with url_server.client() as client:
        stream_id = follow(client, url)["id"]
        before = wait_for(client, stream_id, lambda s: s["seconds_live"] >= 8)["seconds_live"]
        writer.stop()
        last = f"seg{writer.written - 1}.ts"
        writer.playlist.write_text(HEAD.replace("SEQUENCE:0", f"SEQUENCE:{10**15}") + f"#EXTINF:4.000,\n{last}\n")
        after = wait_for(client, stream_id, lambda s: s["seconds_live"] > before + 3600 - 100, timeout=30)
        assert after["seconds_live"] <= before + 3600 + 4 * writer.written
        assert client.get(f"/videos/{stream_id}").status_code == 200
        client.delete(f"/videos/{stream_id}")


def test_a_zero_target_duration_is_reloaded_at_most_twice_a_second(url_server: ServerThread,
                                                                    hls_server: HlsServer) -> None:
    """#EXT-X-TARGETDURATION:0 on a playlist that never changes (this server's own poll is
    0.25 s): read as 1 s, so at most two reloads a second."""
    writer, url = hls_server.stream()
    writer.stop()
    folder = url.split("/")[3]
    writer.playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:0\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.0,\nseg0.ts\n")
    with url_server.client() as client:
        stream_id = follow(client, url)["id"]
        time.sleep(0.5)
        counted, started = hls_server.requests[folder], time.monotonic()
        time.sleep(2.0)
        rate = (hls_server.requests[folder] - counted) / (time.monotonic() - started)
        client.delete(f"/videos/{stream_id}")
    assert rate <= 2.2, rate  # the playlist only: its one segment was read before counting


def test_a_zero_target_with_zero_durations_is_refused(url_server: ServerThread, hls_server: HlsServer) -> None:
    writer, url = hls_server.stream()
    writer.stop()
    writer.playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:0\n#EXTINF:0,\nseg0.ts\n#EXTINF:0,\nseg0.ts\n")
    with url_server.client() as client:
        response = client.post("/streams", json={"url": url})
    assert response.status_code == 422 and response.json()["error"]["code"] == "bad_playlist"
