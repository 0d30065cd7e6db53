"""Alerts delivered to webhooks: signed, retried, never in the follower's way.

Each watch with a webhook has a bounded queue and one sender task: a full queue drops its
oldest alert (counted). A delivery is a POST of the alert's JSON through the guarded client
(the URL intake's address policy at connect time, its timeouts, no redirects followed) with
`X-LongVU-Timestamp` and `X-LongVU-Signature: sha256=<hex HMAC-SHA256 of "timestamp.body"
with the watch's secret>`. 5xx answers, timeouts and connection failures are tried again,
3 tries in all with backoff; a 4xx or a redirect is final; a refused address is never
contacted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from server.ingest.client import GuardedClient
from server.ingest.errors import FetchTimeout, UrlNotAllowed
from server.metrics import Metrics

log = logging.getLogger("longvu.webhooks")
TRIES = 3
QUEUE = 32  # alerts waiting per watch; beyond, the oldest is dropped


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


@dataclass
class Target:
    url: str
    secret: str
    queue: deque[bytes] = field(default_factory=lambda: deque(maxlen=QUEUE))
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


class Webhooks:
    def __init__(self, client: GuardedClient, metrics: Metrics, backoff_s: float = 0.5) -> None:
        self.client, self.metrics, self.backoff_s = client, metrics, backoff_s
        self._targets: dict[str, Target] = {}

    def send(self, watch_id: str, url: str, secret: str, body: bytes) -> None:
        """Queue one alert for the watch's webhook; returns at once."""
        target = self._targets.get(watch_id)
        if target is None or (target.url, target.secret) != (url, secret):
            self.forget(watch_id)
            target = self._targets[watch_id] = Target(url, secret)
            target.task = asyncio.create_task(self._deliver(target))
        if len(target.queue) == target.queue.maxlen:
            self.metrics.webhook_deliveries.labels("dropped").inc()
        target.queue.append(body)
        target.ready.set()

    def forget(self, watch_id: str) -> None:
        """The watch ended: its sender stops."""
        target = self._targets.pop(watch_id, None)
        if target is not None and target.task is not None:
            target.task.cancel()

    async def close(self) -> None:
        for watch_id in list(self._targets):
            self.forget(watch_id)
        await self.client.aclose()

    async def _deliver(self, target: Target) -> None:
        while True:
            await target.ready.wait()
            while target.queue:
                outcome = await self._post(target, target.queue.popleft())
                self.metrics.webhook_deliveries.labels(outcome).inc()
            target.ready.clear()

    async def _post(self, target: Target, body: bytes) -> str:
        for attempt in range(TRIES):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "X-LongVU-Timestamp": timestamp,
                       "X-LongVU-Signature": signature(target.secret, timestamp, body)}
            try:
                status = await self.client.post(target.url, body, headers)
            except UrlNotAllowed as exc:  # the address policy: nothing was sent
                log.warning("webhook refused: %s", exc)
                return "refused"
            except FetchTimeout:
                continue
            except Exception as exc:  # connection failures: worth another try
                log.info("webhook delivery failed: %s", exc)
                continue
            if status < 300:
                return "delivered"
            if status < 500:
                log.warning("webhook answered HTTP %d; not tried again", status)
                return "failed"
        return "failed"
