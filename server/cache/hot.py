"""Decoded videos kept in this process, so that asking again skips the transfer and the
deserialisation. The store stays the source of truth: an entry is used only while the
store still has the video's tokens (one cheap existence check), a live stream's window
only while its status lists it. Cold loads are single flight: questions that arrive
together for a video not in memory share one read."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from models.vision.encoded import EncodedVideo


class HotVideos:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._videos: OrderedDict[str, EncodedVideo] = OrderedDict()
        self._bytes = 0
        self._loading: dict[str, asyncio.Future[EncodedVideo]] = {}

    async def load(self, video_id: str, read: Callable[[], Awaitable[EncodedVideo]]) -> EncodedVideo:
        """The video from memory, or from `read()`, run once for all who wait on it."""
        video = self.get(video_id)
        if video is not None:
            return video
        pending = self._loading.get(video_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[EncodedVideo] = asyncio.get_running_loop().create_future()
        self._loading[video_id] = future
        try:
            video = await read()
            self.put(video_id, video)
            future.set_result(video)
            return video
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._loading[video_id]

    def get(self, video_id: str) -> EncodedVideo | None:
        video = self._videos.get(video_id)
        if video is not None:
            self._videos.move_to_end(video_id)
        return video

    def put(self, video_id: str, video: EncodedVideo) -> None:
        self.discard(video_id)
        if video.nbytes > self.max_bytes:
            return
        while self._bytes + video.nbytes > self.max_bytes:
            self.discard(next(iter(self._videos)))
        self._videos[video_id] = video
        self._bytes += video.nbytes

    def discard(self, video_id: str) -> None:
        video = self._videos.pop(video_id, None)
        if video is not None:
            self._bytes -= video.nbytes
