"""What the server keeps per video: the encoded tokens, the job status, the job lease.

Keys carry the key schema, the tokens' format version, the model's fingerprint and the
pipeline settings' fingerprint, so a new model or new settings never read another's
tokens. A video's keys share one Redis Cluster hash slot (its id is the hash tag), so the
scripts that touch several of them run on a cluster as on one Redis.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import Protocol

from models.vision.encoded import SCHEMA_VERSION

log = logging.getLogger("longvu.cache")


def pipeline_fingerprint(**settings: object) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def status_json(status: dict) -> str:
    """A status as strict JSON, whatever numbers went into it: a non-finite float (which
    `json.dumps` would write as `Infinity`, and no JSON reader takes back) is written as null
    and logged. Sources are bounded where they are read; this is the last line."""
    try:
        return json.dumps(status, allow_nan=False)
    except ValueError:
        replaced: list[str] = []
        text = json.dumps(_finite(status, "", replaced), allow_nan=False)
        log.error("a status held non-finite numbers (written as null): %s", replaced)
        return text


def _finite(value: object, path: str, replaced: list[str]) -> object:
    """`value` with every non-finite float as None; their paths go to `replaced`."""
    if isinstance(value, float) and not math.isfinite(value):
        replaced.append(path)
        return None
    if isinstance(value, dict):
        return {k: _finite(v, f"{path}.{k}" if path else str(k), replaced) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v, f"{path}[{i}]", replaced) for i, v in enumerate(value)]
    return value


KEY_SCHEMA = 2  # 2: the video id as a hash tag, `{id}`, before the kind of key


class Keys:
    def __init__(self, model_fingerprint: str, pipeline_fingerprint: str) -> None:
        self.prefix = f"longvu:k{KEY_SCHEMA}:v{SCHEMA_VERSION}:{model_fingerprint}:{pipeline_fingerprint}"

    def _key(self, video_id: str, kind: str) -> str:
        return f"{self.prefix}:{{{video_id}}}:{kind}"  # the first {...} of a key picks its slot

    def tokens(self, video_id: str) -> str:
        return self._key(video_id, "tokens")

    def status(self, video_id: str) -> str:
        return self._key(video_id, "status")

    def lease(self, video_id: str) -> str:
        return self._key(video_id, "lease")

    def windows(self, video_id: str) -> str:
        """A live stream's encoded windows: a hash, one field per window."""
        return self._key(video_id, "windows")

    def results(self, video_id: str) -> str:
        """What was derived from a video's tokens (its chapters): a hash, one field per result."""
        return self._key(video_id, "results")

    def watches(self, video_id: str) -> str:
        """A live stream's watches: a hash, one field per watch (its JSON, secret included)."""
        return self._key(video_id, "watches")

    def streams(self) -> str:
        """The ids of the live streams being followed, for a replica to take one over."""
        return f"{self.prefix}:streams"


class Store(Protocol):
    """Every method may raise `CacheUnavailable` when the backing service is down."""

    async def get_tokens(self, video_id: str) -> bytes | None: ...
    async def put_tokens(self, video_id: str, data: bytes) -> None: ...
    async def has_tokens(self, video_id: str) -> bool: ...
    async def get_status(self, video_id: str) -> dict | None: ...
    async def put_status(self, video_id: str, status: dict, owner: str) -> bool:
        """Write a job's status only while `owner` holds the video's lease, at once (False,
        writing nothing, once the lease is lost or the video deleted: a DELETE sticks)."""
    async def delete(self, video_id: str) -> bool:
        """Tokens (or a stream's windows), status, lease, results and watches, at once; whether
        there was a video."""
    async def acquire_lease(self, video_id: str, owner: str, ttl_s: float) -> bool: ...
    async def renew_lease(self, video_id: str, owner: str, ttl_s: float) -> bool: ...
    async def release_lease(self, video_id: str, owner: str) -> None: ...
    async def lease_held(self, video_id: str) -> bool: ...
    async def lease_info(self, video_id: str) -> tuple[str, float] | None:
        """The lease's owner and the seconds it has left, or None."""
    async def take_lease(self, video_id: str, previous: str, owner: str, ttl_s: float) -> bool:
        """Take over a lease still held by `previous` (an orphan); False if it changed."""
    async def finish(self, video_id: str, owner: str, tokens: bytes, status: dict) -> bool:
        """Write the tokens and the ready status only while `owner` holds the lease, at once
        (False, writing nothing, when the lease was lost or the video deleted)."""
    async def update_windows(self, video_id: str, owner: str, add: dict[str, bytes], drop: list[str],
                             status: dict) -> bool:
        """Add a live stream's new windows, remove those in `drop` (past retention) and write
        the status, at once, only while `owner` holds the lease."""
    async def get_windows(self, video_id: str, windows: list[str]) -> list[bytes | None]: ...
    async def get_result(self, video_id: str, name: str) -> bytes | None: ...
    async def put_result(self, video_id: str, results: dict[str, bytes]) -> bool:
        """Keep results derived from the video, only while it is there (False, writing
        nothing, once it was deleted); DELETE of the video removes them."""
    async def put_watch(self, video_id: str, watch_id: str, data: bytes, most: int) -> bool | None:
        """Add a watch to a stream that is there: None when it is not, False (writing nothing)
        when it has `most` watches already."""
    async def get_watches(self, video_id: str) -> dict[str, bytes]: ...
    async def delete_watch(self, video_id: str, watch_id: str) -> bool: ...
    async def add_stream(self, video_id: str) -> None: ...
    async def remove_stream(self, video_id: str) -> None: ...
    async def streams(self) -> list[str]: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...
