"""The embedded cache for a single process with no Redis: an LRU bounded in bytes."""

from __future__ import annotations

import json
import time
from collections import OrderedDict

from server.cache.store import status_json


class MemoryStore:
    def __init__(self, max_bytes: int, ttl_s: int) -> None:
        self.max_bytes, self.ttl_s = max_bytes, ttl_s
        self._tokens: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self._status: dict[str, tuple[dict, float]] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        # Live streams' windows, bounded by their retention rather than by the LRU.
        self._windows: dict[str, dict[str, bytes]] = {}
        self._streams: set[str] = set()
        self._results: dict[str, dict[str, bytes]] = {}  # small (chapters' text), dropped with their video
        self._watches: dict[str, dict[str, bytes]] = {}

    def _drop(self, video_id: str) -> None:
        data, _ = self._tokens.pop(video_id)
        self._bytes -= len(data)

    async def get_tokens(self, video_id: str) -> bytes | None:
        entry = self._tokens.get(video_id)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            self._drop(video_id)
            return None
        self._tokens.move_to_end(video_id)
        return entry[0]

    async def put_tokens(self, video_id: str, data: bytes) -> None:
        if video_id in self._tokens:
            self._drop(video_id)
        if len(data) > self.max_bytes:
            return
        while self._bytes + len(data) > self.max_bytes:
            self._drop(next(iter(self._tokens)))
        self._tokens[video_id] = (data, time.monotonic() + self.ttl_s)
        self._bytes += len(data)

    async def has_tokens(self, video_id: str) -> bool:
        return video_id in self._windows or await self.get_tokens(video_id) is not None

    async def get_status(self, video_id: str) -> dict | None:
        entry = self._status.get(video_id)
        if entry is None:
            return None
        status, expires = entry
        # Expired, or a "ready" status whose tokens were evicted: it would point at nothing.
        if expires < time.monotonic() or (status.get("status") == "ready" and not await self.has_tokens(video_id)):
            del self._status[video_id]
            return None
        return status

    async def put_status(self, video_id: str, status: dict, owner: str) -> bool:
        if not self._holds(video_id, owner):
            return False
        self._status[video_id] = (json.loads(status_json(status)), time.monotonic() + self.ttl_s)  # as Redis keeps it
        return True

    def _holds(self, video_id: str, owner: str) -> bool:
        held = self._leases.get(video_id)
        return held is not None and held[0] == owner and held[1] > time.monotonic()

    async def delete(self, video_id: str) -> bool:
        found = video_id in self._tokens or video_id in self._status or video_id in self._windows
        if video_id in self._tokens:
            self._drop(video_id)
        self._windows.pop(video_id, None)
        self._results.pop(video_id, None)
        self._watches.pop(video_id, None)
        self._streams.discard(video_id)
        self._status.pop(video_id, None)
        self._leases.pop(video_id, None)
        return found

    async def acquire_lease(self, video_id: str, owner: str, ttl_s: float) -> bool:
        if await self.lease_held(video_id):
            return False
        self._leases[video_id] = (owner, time.monotonic() + ttl_s)
        return True

    async def renew_lease(self, video_id: str, owner: str, ttl_s: float) -> bool:
        held = self._leases.get(video_id)
        if held is None or held[0] != owner:
            return False
        self._leases[video_id] = (owner, time.monotonic() + ttl_s)
        return True

    async def release_lease(self, video_id: str, owner: str) -> None:
        if self._leases.get(video_id, ("",))[0] == owner:
            del self._leases[video_id]

    async def lease_held(self, video_id: str) -> bool:
        held = self._leases.get(video_id)
        return held is not None and held[1] > time.monotonic()

    async def lease_info(self, video_id: str) -> tuple[str, float] | None:
        held = self._leases.get(video_id)
        if held is None or held[1] <= time.monotonic():
            return None
        return held[0], held[1] - time.monotonic()

    async def take_lease(self, video_id: str, previous: str, owner: str, ttl_s: float) -> bool:
        info = await self.lease_info(video_id)
        if info is None or info[0] != previous:
            return False
        self._leases[video_id] = (owner, time.monotonic() + ttl_s)
        return True

    async def finish(self, video_id: str, owner: str, tokens: bytes, status: dict) -> bool:
        if not self._holds(video_id, owner):
            return False
        await self.put_tokens(video_id, tokens)
        return await self.put_status(video_id, status, owner)

    async def update_windows(self, video_id: str, owner: str, add: dict[str, bytes], drop: list[str],
                             status: dict) -> bool:
        if not self._holds(video_id, owner):
            return False
        windows = self._windows.setdefault(video_id, {})
        windows.update(add)
        for name in drop:
            windows.pop(name, None)
        return await self.put_status(video_id, status, owner)

    async def get_windows(self, video_id: str, windows: list[str]) -> list[bytes | None]:
        held = self._windows.get(video_id, {})
        return [held.get(name) for name in windows]

    async def get_result(self, video_id: str, name: str) -> bytes | None:
        if await self.get_status(video_id) is None:  # expired or evicted with its video
            self._results.pop(video_id, None)
            return None
        return self._results.get(video_id, {}).get(name)

    async def put_result(self, video_id: str, results: dict[str, bytes]) -> bool:
        if await self.get_status(video_id) is None:
            return False
        self._results.setdefault(video_id, {}).update(results)
        return True

    async def put_watch(self, video_id: str, watch_id: str, data: bytes, most: int) -> bool | None:
        if await self.get_status(video_id) is None:
            return None
        watches = self._watches.setdefault(video_id, {})
        if len(watches) >= most:
            return False
        watches[watch_id] = data
        return True

    async def get_watches(self, video_id: str) -> dict[str, bytes]:
        return dict(self._watches.get(video_id, {}))

    async def delete_watch(self, video_id: str, watch_id: str) -> bool:
        return self._watches.get(video_id, {}).pop(watch_id, None) is not None

    async def add_stream(self, video_id: str) -> None:
        self._streams.add(video_id)

    async def remove_stream(self, video_id: str) -> None:
        self._streams.discard(video_id)

    async def streams(self) -> list[str]:
        return sorted(self._streams)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
