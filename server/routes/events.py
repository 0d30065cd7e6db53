"""GET /videos/{id}/events: a video's ingest progress as server-sent events.

The state lives in the store (Redis when configured), so a subscriber on any replica,
early or late, sees the same thing: the current status at once, a `progress` event
whenever it changes, and one closing `ready` or `failed` event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends
from fastapi.sse import KEEPALIVE_COMMENT, EventSourceResponse, format_sse_event

from server.errors import ApiError, CacheUnavailable, ShuttingDown
from server.routes.deps import services
from server.routes.videos import check_id, public_status
from server.schemas import Alert, VideoStatus
from server.services import Services
from server.tenants import public, request_tenant

router = APIRouter()
POLL_S = 0.25


def error_event(exc: ApiError) -> bytes:
    return format_sse_event(data_str=json.dumps({"code": exc.code, "message": exc.message}), event="error")


def alert_events(status: dict, after: int) -> list[bytes]:
    """A live stream's alerts numbered after `after` (`server.watches.alerts`), as events."""
    return [format_sse_event(data_str=Alert(**alert).model_dump_json(), event="alert")
            for alert in status.get("alerts", []) if alert["seq"] > after]


async def status_events(svc: Services, video_id: str, status: dict | None) -> AsyncIterator[bytes]:
    last, quiet = "", 0.0
    alerted = status.get("alert_seq", 0) if status else 0  # a subscriber is told of alerts raised from now on
    while True:
        if status is None:
            yield format_sse_event(data_str=VideoStatus(id=public(video_id), status="failed", error_code="deleted",
                                                        error="the video was deleted").model_dump_json(
                exclude_none=True), event="failed")
            return
        body = public_status(status).model_dump_json(exclude_none=True)
        kind = status["status"] if status["status"] in ("ready", "failed") else "progress"
        for event in alert_events(status, alerted):
            yield event
            quiet = 0.0
        alerted = status.get("alert_seq", alerted)
        if body != last:
            yield format_sse_event(data_str=body, event=kind)
            last, quiet = body, 0.0
        elif quiet >= svc.settings.sse_ping_s:
            yield KEEPALIVE_COMMENT
            quiet = 0.0
        if kind != "progress":
            return
        await asyncio.sleep(POLL_S)
        quiet += POLL_S
        if svc.draining:  # a subscriber must not hold a shutdown up: it follows the video elsewhere
            yield error_event(ShuttingDown())
            return
        try:
            status = await svc.jobs.status(video_id)
        except CacheUnavailable as exc:
            yield error_event(exc)
            return


@router.get("/videos/{video_id}/events", responses={200: {"content": {"text/event-stream": {}}, "description":
            "`progress` events (a video status: stage, frames, seconds done, ETA), then one `ready` or `failed`; "
            "on a live stream, an `alert` event for each alert its watches raise"}})
async def video_events(video_id: str, svc: Services = Depends(services),
                       tenant: str = Depends(request_tenant)) -> EventSourceResponse:
    video_id = check_id(video_id, tenant)
    status = await svc.jobs.status(video_id)
    if status is None:
        raise ApiError(404, "not_found", "no such video")
    return EventSourceResponse(status_events(svc, video_id, status), headers={"Cache-Control": "no-cache"})
