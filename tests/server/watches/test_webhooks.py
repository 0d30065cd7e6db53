"""Webhook deliveries to a loopback receiver: signed, retried on 5xx, never sent to a
refused address, and a full queue drops its oldest alert."""

from __future__ import annotations

import asyncio
import json

import pytest

from server.ingest.client import GuardedClient
from server.metrics import Metrics
from server.settings import Settings
from server.watches.webhooks import QUEUE, Webhooks, signature
from tests.webhooks import Receiver

SECRET = "a-secret-of-enough-length"


def sent(metrics: Metrics, outcome: str) -> float:
    return metrics.webhook_deliveries.labels(outcome)._value.get()


async def settle(hooks: Webhooks, metrics: Metrics, total: int, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while sum(sent(metrics, o) for o in ("delivered", "failed", "refused")) < total:
            await asyncio.sleep(0.02)


def run(receiver_status: int, bodies: list[bytes], url: str | None = None, allow_private: bool = True,
        ) -> tuple[Receiver, Metrics]:
    receiver, metrics = Receiver(receiver_status), Metrics()

    async def main() -> None:
        hooks = Webhooks(GuardedClient(Settings(url_allow_private=allow_private)), metrics, backoff_s=0.01)
        for body in bodies:
            hooks.send("w1", url or receiver.url, SECRET, body)
        await settle(hooks, metrics, len(bodies))
        await hooks.close()

    try:
        asyncio.run(main())
    finally:
        receiver.stop()
    return receiver, metrics


def test_deliveries_are_signed_and_in_order() -> None:
    bodies = [json.dumps({"n": i}).encode() for i in range(3)]
    receiver, metrics = run(200, bodies)
    assert receiver.verified(SECRET) == bodies
    assert sent(metrics, "delivered") == 3
    headers = receiver.received[0][0]
    assert headers["content-type"] == "application/json"
    assert signature("other", headers["x-longvu-timestamp"], bodies[0]) != headers["x-longvu-signature"]


def test_a_failing_receiver_is_tried_three_times_then_counted_failed() -> None:
    receiver, metrics = run(500, [b'{"n": 1}'])
    assert len(receiver.received) == 3 and sent(metrics, "failed") == 1 and sent(metrics, "delivered") == 0


def test_a_4xx_is_final() -> None:
    receiver, metrics = run(410, [b'{"n": 1}'])
    assert len(receiver.received) == 1 and sent(metrics, "failed") == 1


@pytest.mark.parametrize(("url", "allow_private"), [("http://169.254.169.254/latest", True),
                                                    (None, False)])
def test_a_refused_address_is_never_contacted(url: str | None, allow_private: bool) -> None:
    """The metadata address is refused even where private ones are allowed; loopback where
    they are not."""
    receiver, metrics = run(200, [b'{"n": 1}'], url=url, allow_private=allow_private)
    assert receiver.received == [] and sent(metrics, "refused") == 1


def test_a_full_queue_drops_the_oldest() -> None:
    receiver, metrics = Receiver(200), Metrics()

    async def main() -> None:
        hooks = Webhooks(GuardedClient(Settings(url_allow_private=True)), metrics)
        for i in range(QUEUE + 5):  # queued before the sender runs once
            hooks.send("w1", receiver.url, SECRET, json.dumps({"n": i}).encode())
        await settle(hooks, metrics, QUEUE)
        await hooks.close()

    try:
        asyncio.run(main())
    finally:
        receiver.stop()
    assert sent(metrics, "dropped") == 5
    assert [json.loads(b)["n"] for b in receiver.verified(SECRET)] == list(range(5, QUEUE + 5))
