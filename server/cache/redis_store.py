"""The shared cache: Redis (one node or a cluster), seen by every replica and kept across
restarts. Every step that touches several keys of a video is one Lua script over keys of
one hash slot, so it runs the same on one Redis and on a cluster."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from server.cache.store import Keys, status_json
from server.errors import CacheUnavailable

T = TypeVar("T")
UNREACHABLE = (RedisError, RedisClusterException, OSError)  # a cluster's own errors are not RedisErrors

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_TAKE = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
         "return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) and 1 end return 0")
_PUT_STATUS = ("if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end "
               "redis.call('set', KEYS[2], ARGV[2], 'EX', ARGV[3]) return 1")
_DELETE = ("local found = redis.call('del', KEYS[1], KEYS[2], KEYS[4]) "
           "redis.call('del', KEYS[3], KEYS[5], KEYS[6]) return found")
# ARGV: watch id, its JSON, the most watches, ttl. -1: no such stream; 0: full.
_PUT_WATCH = ("if redis.call('exists', KEYS[1]) == 0 then return -1 end "
              "if redis.call('hlen', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end "
              "redis.call('hset', KEYS[2], ARGV[1], ARGV[2]) redis.call('expire', KEYS[2], ARGV[4]) return 1")
# ARGV: ttl, then the results' names and data.
_PUT_RESULTS = ("if redis.call('exists', KEYS[1]) == 0 then return 0 end "
                "for i = 2, #ARGV, 2 do redis.call('hset', KEYS[2], ARGV[i], ARGV[i + 1]) end "
                "redis.call('expire', KEYS[2], ARGV[1]) return 1")
_LEASE_INFO = "return {redis.call('get', KEYS[1]) or false, redis.call('pttl', KEYS[1])}"  # false: nil, kept
_FINISH = ("if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end "
           "redis.call('set', KEYS[2], ARGV[2], 'EX', ARGV[4]) "
           "redis.call('set', KEYS[3], ARGV[3], 'EX', ARGV[4]) return 1")
# ARGV: owner, status, ttl, how many windows to add, then their names and data, then those to drop.
_UPDATE_WINDOWS = ("if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end "
                   "local added = tonumber(ARGV[4]) "
                   "for i = 0, added - 1 do redis.call('hset', KEYS[2], ARGV[5 + 2 * i], ARGV[6 + 2 * i]) end "
                   "for i = 5 + 2 * added, #ARGV do redis.call('hdel', KEYS[2], ARGV[i]) end "
                   "redis.call('expire', KEYS[2], ARGV[3]) "
                   "redis.call('set', KEYS[3], ARGV[2], 'EX', ARGV[3]) return 1")


def connect(url: str, cluster: bool) -> redis.Redis | RedisCluster:
    """A client for one Redis, or for a Redis Cluster that the URL names any node of (it
    finds the others, follows MOVED and ASK, and maps the slots again after a failover).
    TLS and credentials come from the URL either way."""
    if cluster:
        # Retries span a failover (about two node timeouts); beyond them the store says
        # the cache is unavailable and the request gets a 503 with Retry-After.
        return RedisCluster.from_url(url, socket_connect_timeout=2, socket_timeout=5,
                                     retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 6))
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10,
                                retry_on_timeout=False)


class RedisStore:
    def __init__(self, client: redis.Redis | RedisCluster, keys: Keys, ttl_s: int) -> None:
        self.client, self.keys, self.ttl_s = client, keys, ttl_s

    async def _call(self, op: Awaitable[T]) -> T:
        try:
            return await op
        except UNREACHABLE as exc:
            raise CacheUnavailable() from exc

    async def get_tokens(self, video_id: str) -> bytes | None:
        return await self._call(self.client.get(self.keys.tokens(video_id)))

    async def put_tokens(self, video_id: str, data: bytes) -> None:
        await self._call(self.client.set(self.keys.tokens(video_id), data, ex=self.ttl_s))

    async def has_tokens(self, video_id: str) -> bool:
        """A video's tokens, or a stream's windows (keys of one slot: one EXISTS)."""
        keys = self.keys
        return bool(await self._call(self.client.exists(keys.tokens(video_id), keys.windows(video_id))))

    async def get_status(self, video_id: str) -> dict | None:
        raw = await self._call(self.client.get(self.keys.status(video_id)))
        return json.loads(raw) if raw else None

    async def put_status(self, video_id: str, status: dict, owner: str) -> bool:
        keys = self.keys
        done = await self._call(self.client.eval(
            _PUT_STATUS, 2, keys.lease(video_id), keys.status(video_id), owner, status_json(status), self.ttl_s))
        return bool(done)

    async def delete(self, video_id: str) -> bool:
        """Removes the lease too: a job running anywhere can write nothing more and stops."""
        keys = self.keys
        found = await self._call(self.client.eval(
            _DELETE, 6, keys.tokens(video_id), keys.status(video_id), keys.lease(video_id), keys.windows(video_id),
            keys.results(video_id), keys.watches(video_id)))
        await self.remove_stream(video_id)
        return bool(found)

    async def acquire_lease(self, video_id: str, owner: str, ttl_s: float) -> bool:
        return bool(await self._call(self.client.set(self.keys.lease(video_id), owner, nx=True, px=int(ttl_s * 1000))))

    async def renew_lease(self, video_id: str, owner: str, ttl_s: float) -> bool:
        done = await self._call(self.client.eval(_RENEW, 1, self.keys.lease(video_id), owner, int(ttl_s * 1000)))
        return bool(done)

    async def release_lease(self, video_id: str, owner: str) -> None:
        await self._call(self.client.eval(_RELEASE, 1, self.keys.lease(video_id), owner))

    async def lease_held(self, video_id: str) -> bool:
        return bool(await self._call(self.client.exists(self.keys.lease(video_id))))

    async def lease_info(self, video_id: str) -> tuple[str, float] | None:
        owner, left_ms = await self._call(self.client.eval(_LEASE_INFO, 1, self.keys.lease(video_id)))
        return (owner.decode(), left_ms / 1000) if owner is not None and left_ms > 0 else None

    async def take_lease(self, video_id: str, previous: str, owner: str, ttl_s: float) -> bool:
        taken = await self._call(self.client.eval(_TAKE, 1, self.keys.lease(video_id), previous, owner,
                                                  int(ttl_s * 1000)))
        return bool(taken)

    async def finish(self, video_id: str, owner: str, tokens: bytes, status: dict) -> bool:
        keys = self.keys
        done = await self._call(self.client.eval(
            _FINISH, 3, keys.lease(video_id), keys.tokens(video_id), keys.status(video_id),
            owner, tokens, status_json(status), self.ttl_s))
        return bool(done)

    async def update_windows(self, video_id: str, owner: str, add: dict[str, bytes], drop: list[str],
                             status: dict) -> bool:
        keys = self.keys
        added = [item for pair in add.items() for item in pair]
        done = await self._call(self.client.eval(
            _UPDATE_WINDOWS, 3, keys.lease(video_id), keys.windows(video_id), keys.status(video_id),
            owner, status_json(status), self.ttl_s, len(add), *added, *drop))
        return bool(done)

    async def get_windows(self, video_id: str, windows: list[str]) -> list[bytes | None]:
        if not windows:
            return []
        return list(await self._call(self.client.hmget(self.keys.windows(video_id), windows)))

    async def get_result(self, video_id: str, name: str) -> bytes | None:
        return await self._call(self.client.hget(self.keys.results(video_id), name))

    async def put_result(self, video_id: str, results: dict[str, bytes]) -> bool:
        keys = self.keys
        items = [item for pair in results.items() for item in pair]
        done = await self._call(self.client.eval(
            _PUT_RESULTS, 2, keys.status(video_id), keys.results(video_id), self.ttl_s, *items))
        return bool(done)

    async def put_watch(self, video_id: str, watch_id: str, data: bytes, most: int) -> bool | None:
        keys = self.keys
        done = await self._call(self.client.eval(
            _PUT_WATCH, 2, keys.status(video_id), keys.watches(video_id), watch_id, data, most, self.ttl_s))
        return None if done == -1 else bool(done)

    async def get_watches(self, video_id: str) -> dict[str, bytes]:
        held = await self._call(self.client.hgetall(self.keys.watches(video_id)))
        return {name.decode(): data for name, data in held.items()}

    async def delete_watch(self, video_id: str, watch_id: str) -> bool:
        return bool(await self._call(self.client.hdel(self.keys.watches(video_id), watch_id)))

    async def add_stream(self, video_id: str) -> None:
        await self._call(self.client.sadd(self.keys.streams(), video_id))

    async def remove_stream(self, video_id: str) -> None:
        await self._call(self.client.srem(self.keys.streams(), video_id))

    async def streams(self) -> list[str]:
        return sorted(m.decode() for m in await self._call(self.client.smembers(self.keys.streams())))

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except UNREACHABLE:
            return False

    async def close(self) -> None:
        await self.client.aclose()
