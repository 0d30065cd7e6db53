"""Server-sent events from a request's queue: each (kind, payload) as one event, keep-alive
comments while it is quiet, until `done` or `error`. However the stream ends (the last
event sent, the client gone), `on_close` stops the work behind it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from fastapi.sse import KEEPALIVE_COMMENT, format_sse_event
from pydantic import BaseModel


async def event_stream(events: asyncio.Queue, ping_s: float, on_close: Callable[[], object]) -> AsyncIterator[bytes]:
    try:
        while True:
            try:
                kind, payload = await asyncio.wait_for(events.get(), ping_s)
            except TimeoutError:
                yield KEEPALIVE_COMMENT
                continue
            data = payload.model_dump_json() if isinstance(payload, BaseModel) else json.dumps(payload,
                                                                                               ensure_ascii=False)
            yield format_sse_event(data_str=data, event=kind)
            if kind in ("done", "error"):
                return
    finally:
        on_close()
