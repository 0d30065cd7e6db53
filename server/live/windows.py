"""A live stream's windows, read for a question as one video."""

from __future__ import annotations

import asyncio

from models.arithmetic import always_prune_from
from models.config import LongVUConfig
from models.vision.encoded import EncodedFormatError, EncodedVideo
from server.cache.hot import HotVideos
from server.cache.store import Store
from server.errors import ApiError


async def read_stream(store: Store, hot: HotVideos, status: dict, config: LongVUConfig) -> EncodedVideo:
    """A stream's windows held now, as one video (pruned as a file of its frames). A
    window never changes once written, so the decoded ones are kept in `hot` by name;
    the status says which windows are held, so a window dropped for retention or with
    the stream is never used again."""
    stream_id = status["id"]
    names = [w[0] for w in status.get("windows", [])]
    if not names:
        raise ApiError(409, "not_ready", "no window of the stream is encoded yet (a window is 16 s of it)",
                       {"Retry-After": "5"})
    keys = {name: f"{stream_id}/{name}" for name in names}
    windows = {name: hot.get(key) for name, key in keys.items()}
    missing = [name for name, window in windows.items() if window is None]
    fetched = await store.get_windows(stream_id, missing)

    def parse() -> dict[str, EncodedVideo]:  # None: dropped since the status was read
        return {name: EncodedVideo.from_bytes(data) for name, data in zip(missing, fetched, strict=True)
                if data is not None}

    try:
        parsed = await asyncio.to_thread(parse)
    except EncodedFormatError as exc:
        raise ApiError(500, "cache_corrupt", "the cached windows are unreadable") from exc
    for name, window in parsed.items():  # on the event loop: `hot` is not shared with threads
        hot.put(keys[name], window)
        windows[name] = window
    held = [w for w in windows.values() if w is not None]
    if not held:
        raise ApiError(404, "not_found", "the stream's windows have expired from the cache")
    joined = await asyncio.to_thread(EncodedVideo.joined, held, always_prune_from(config))
    joined.duration_s = max(joined.duration_s, float(status.get("seconds_live") or 0.0))
    return joined
