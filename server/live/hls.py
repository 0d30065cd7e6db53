"""An HLS stream followed through the guarded HTTP client: the playlist reloaded every half
target duration (at most LONGVU_STREAM_POLL_S), each new segment fetched (its fMP4 init
section once) and decoded on a worker thread. A fresh stream starts at the first segment
listed; a stream taken over starts at the live edge."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import m3u8

from models.vision.frames import Frame
from server.ingest.client import GuardedClient
from server.ingest.connect import Resolver, system_resolver
from server.ingest.errors import BadPlaylist, FetchFailed, FetchTimeout, StreamGone, UrlUnreachable
from server.live import playlist
from server.live.segments import SegmentFrames
from server.live.source import Piece, Resume
from server.settings import Settings

log = logging.getLogger("longvu.live")
PLAYLIST_BYTES = 1 << 20
RETRYABLE = (FetchFailed, FetchTimeout, UrlUnreachable)  # the source may come back; the policy will not change
SEGMENT_TRIES = 3


class HlsSource:
    def __init__(self, url: str, settings: Settings, resume: Resume | None = None,
                 resolve: Resolver = system_resolver) -> None:
        self.url, self.settings = url, settings
        self.client = GuardedClient(settings, resolve)
        self.frames = SegmentFrames(settings)
        self.media_url = url
        self.next_sequence: int | None = resume.position if resume else None
        self.clock_s = resume.clock_s if resume else 0.0  # stream time at `next_sequence`
        if resume:
            self.frames.sampled = resume.frames_sampled
            self.frames.sampler.next_second = int(resume.clock_s)
        self.inits: dict[str, bytes] = {}
        self.first: playlist.MediaPlaylist | None = None

    async def open(self) -> None:
        """The playlist, once; a master playlist is replaced by its variant nearest 720p."""
        parsed = await self._load(self.url)
        if parsed.is_variant:
            self.media_url = playlist.variant_url(parsed)
            parsed = await self._load(self.media_url)
            if parsed.is_variant:
                raise BadPlaylist("a variant of the master playlist is itself a master playlist")
        self.first = playlist.media(parsed)
        if not self.first.segments and self.first.ended:
            raise BadPlaylist("the playlist has ended and lists no segment")

    async def _load(self, url: str) -> m3u8.M3U8:
        body = await self.client.read(url, PLAYLIST_BYTES, "the playlist")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadPlaylist("the playlist is not UTF-8 text") from exc
        return playlist.parse(text, url)

    def resume_point(self) -> Resume:
        return Resume(self.clock_s, self.frames.sampled, self.next_sequence)

    def _start(self, media: playlist.MediaPlaylist) -> None:
        """Where following begins: the first segment listed, or the live edge after a takeover."""
        if self.next_sequence is None:
            self.next_sequence = media.segments[0].sequence if media.segments else 0
        elif media.segments and media.segments[-1].sequence > self.next_sequence:
            skipped = media.segments[-1].sequence - self.next_sequence
            self.clock_s += playlist.gap_s(skipped, media.target_duration_s)  # the takeover's gap, bounded
            self.next_sequence = media.segments[-1].sequence

    async def pieces(self) -> AsyncIterator[Piece]:
        if self.first is None:
            await self.open()
        media: playlist.MediaPlaylist = self.first  # type: ignore[assignment]
        self._start(media)
        last_new = time.monotonic()  # when new segments were last listed and taken in
        while True:
            new = [s for s in media.segments if s.sequence >= self.next_sequence]  # type: ignore[operator]
            for n, segment in enumerate(new):
                frames = await self._segment(segment, media)
                if frames is not None:  # the live edge: the end of the newest segment listed
                    yield Piece(frames, self.clock_s + sum(s.duration_s for s in new[n + 1 :]))
            if media.ended:
                return
            if new:
                last_new = time.monotonic()
            elif time.monotonic() - last_new > self.settings.stream_gone_s:
                raise StreamGone(f"no new segment for {self.settings.stream_gone_s:.0f} s")
            # Half a target duration, at most LONGVU_STREAM_POLL_S, never under half a second:
            # no playlist makes us poll its host in a loop.
            await asyncio.sleep(max(playlist.MIN_RELOAD_S, min(media.target_duration_s / 2,
                                                               self.settings.stream_poll_s)))
            media = await self._reload(last_new)

    async def _reload(self, last_new: float) -> playlist.MediaPlaylist:
        """The playlist again; a failure is retried until the source has given nothing for
        LONGVU_STREAM_GONE_S."""
        while True:
            try:
                return playlist.media(await self._load(self.media_url))
            except RETRYABLE as exc:
                if time.monotonic() - last_new > self.settings.stream_gone_s:
                    raise StreamGone(f"the playlist could not be fetched for {self.settings.stream_gone_s:.0f} s "
                                     f"({exc})") from exc
                log.info("live playlist %s: %s; trying again", self.media_url, exc)
                await asyncio.sleep(max(playlist.MIN_RELOAD_S, self.settings.stream_poll_s))

    async def _segment(self, segment: playlist.Segment, media: playlist.MediaPlaylist) -> list[Frame] | None:
        """One segment's frames; a segment that cannot be fetched after a few tries is a gap."""
        if segment.sequence > self.next_sequence:  # type: ignore[operator]
            missed = segment.sequence - self.next_sequence  # type: ignore[operator]
            log.warning("live playlist %s: %d segments missed", self.media_url, missed)
            self.clock_s += playlist.gap_s(missed, media.target_duration_s)  # a leap is a gap of bounded length
        start = self.clock_s
        self.next_sequence, self.clock_s = segment.sequence + 1, start + segment.duration_s
        for attempt in range(SEGMENT_TRIES):
            try:
                data = await self._fetch(segment)
                break
            except RETRYABLE as exc:
                if attempt == SEGMENT_TRIES - 1:
                    log.warning("live segment %s skipped: %s", segment.url, exc)
                    return None
                await asyncio.sleep(min(1.0, media.target_duration_s / 2))
        return await asyncio.to_thread(self.frames.decode, data, start)

    async def _fetch(self, segment: playlist.Segment) -> bytes:
        limit = self.settings.max_upload_bytes
        init = b""
        if segment.init_url is not None:
            if segment.init_url not in self.inits:
                self.inits = {segment.init_url: await self.client.read(segment.init_url, limit, "an init section")}
            init = self.inits[segment.init_url]
        return init + await self.client.read(segment.url, limit, "a segment")

    async def aclose(self) -> None:
        await self.client.aclose()
