"""Decoded videos kept in this process, so that asking again skips the transfer and the
deserialisation. The store stays the source of truth: an entry is used only while the
store still has the video's tokens (one cheap existence check)."""

from __future__ import annotations

from collections import OrderedDict

from models.encoded import EncodedVideo


class HotVideos:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._videos: OrderedDict[str, EncodedVideo] = OrderedDict()
        self._bytes = 0

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
