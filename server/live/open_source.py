"""The live source for a URL, by its scheme: an HLS playlist goes through the guarded HTTP
client; RTSP, RTMP and SRT go to FFmpeg, only for the hosts LONGVU_STREAM_ALLOWED_HOSTS
lists, since the address guard cannot see FFmpeg's own network I/O."""

from __future__ import annotations

import httpx

from server.ingest.connect import Resolver, system_resolver
from server.ingest.errors import InvalidUrl, UrlNotAllowed
from server.live.ffmpeg import FfmpegSource
from server.live.hls import HlsSource
from server.live.source import LiveSource, Resume
from server.settings import Settings

FFMPEG_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt")


def open_source(url: str, settings: Settings, resume: Resume | None = None,
                resolve: Resolver = system_resolver) -> LiveSource:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise InvalidUrl(f"not a valid URL: {exc}") from exc
    if parsed.scheme in ("http", "https"):
        return HlsSource(url, settings, resume, resolve)
    if parsed.scheme in FFMPEG_SCHEMES:
        host = (parsed.host or "").rstrip(".").lower()
        if host not in {h.lower() for h in settings.stream_allowed_hosts}:
            raise UrlNotAllowed(f"{parsed.scheme}:// streams are read by FFmpeg, out of the address guard's "
                                f"sight: host {host or '(none)'} is not in LONGVU_STREAM_ALLOWED_HOSTS")
        return FfmpegSource(url, settings, resume)
    raise UrlNotAllowed("a stream URL is an HLS playlist (http, https) or rtsp, rtmp or srt to an allowed host")
