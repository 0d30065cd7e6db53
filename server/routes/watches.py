"""POST /videos/{id}/watches, GET /videos/{id}/watches, DELETE /videos/{id}/watches/{watch_id}:
standing questions on a live stream (`server.watches`)."""

from __future__ import annotations

import json
import re
import secrets
import time

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from server.errors import ApiError
from server.ingest.client import check_url
from server.ingest.errors import IngestError
from server.moments import yes_no
from server.routes.deps import services
from server.routes.json_body import json_body, openapi_body
from server.routes.videos import check_id
from server.schemas import ErrorBody, Watch, WatchList, WatchRequest
from server.services import Services
from server.tenants import public, request_tenant

router = APIRouter()
WATCH_ID = re.compile(r"[0-9a-f]{16}")


def public_watch(stored: dict) -> Watch:
    webhook = stored.get("webhook")
    return Watch(**{k: v for k, v in stored.items() if k != "webhook"}, webhook_url=webhook["url"] if webhook else None)


async def live_stream(svc: Services, video_id: str) -> None:
    """404 unless the video is there, 409 unless it is a live stream."""
    status = await svc.jobs.status(video_id)
    if status is None:
        raise ApiError(404, "not_found", "no such video")
    if status.get("kind") != "stream" or status["status"] != "live":
        raise ApiError(409, "not_live", "watches follow live streams; for a file (or an ended stream) find moments "
                       f"with POST /videos/{public(video_id)}/moments")


@router.post("/videos/{video_id}/watches", status_code=201, response_model=Watch, responses={
    **{status: {"model": ErrorBody} for status in (401, 404, 409, 422, 501)}}, openapi_extra=openapi_body(WatchRequest))
async def add_watch(video_id: str, body: WatchRequest = Depends(json_body(WatchRequest)),
                    svc: Services = Depends(services), tenant: str = Depends(request_tenant)) -> JSONResponse:
    scoped = check_id(video_id, tenant)
    yes_no(svc)  # 501 where windows cannot be scored
    await live_stream(svc, scoped)
    if body.webhook is not None:
        try:
            check_url(body.webhook.url, svc.settings)
        except IngestError as exc:
            raise ApiError(422, "invalid_webhook", str(exc), param="webhook.url") from exc
    stored = {"id": secrets.token_hex(8), "query": body.query, "threshold": body.threshold,
              "window_s": body.window_s, "cooldown_s": body.cooldown_s, "created_at": time.time(),
              "webhook": body.webhook.model_dump() if body.webhook else None}
    added = await svc.store.put_watch(scoped, stored["id"], json.dumps(stored).encode(), svc.settings.max_watches)
    if added is None:
        raise ApiError(404, "not_found", "no such video")
    if not added:
        raise ApiError(409, "too_many_watches", f"the stream has {svc.settings.max_watches} watches already "
                       "(LONGVU_MAX_WATCHES); delete one first")
    return JSONResponse(public_watch(stored).model_dump(), status_code=201,
                        headers={"Location": f"/videos/{video_id}/watches/{stored['id']}"})


@router.get("/videos/{video_id}/watches", response_model=WatchList, responses={
    **{status: {"model": ErrorBody} for status in (401, 404)}})
async def list_watches(video_id: str, svc: Services = Depends(services),
                       tenant: str = Depends(request_tenant)) -> WatchList:
    scoped = check_id(video_id, tenant)
    if await svc.jobs.status(scoped) is None:
        raise ApiError(404, "not_found", "no such video")
    stored = [json.loads(raw) for raw in (await svc.store.get_watches(scoped)).values()]
    return WatchList(watches=sorted((public_watch(w) for w in stored), key=lambda w: w.created_at))


@router.delete("/videos/{video_id}/watches/{watch_id}", status_code=204, responses={
    **{status: {"model": ErrorBody} for status in (401, 404)}})
async def end_watch(video_id: str, watch_id: str, svc: Services = Depends(services),
                    tenant: str = Depends(request_tenant)) -> Response:
    scoped = check_id(video_id, tenant)
    if not WATCH_ID.fullmatch(watch_id) or not await svc.store.delete_watch(scoped, watch_id):
        raise ApiError(404, "not_found", "no such watch")
    svc.streams.webhooks.forget(watch_id)
    return Response(status_code=204)
