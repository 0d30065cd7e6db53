"""POST /videos/{id}/moments, POST /videos/{id}/chapters, GET /videos/{id}/chapters.vtt."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Depends, Request, Response
from fastapi.sse import EventSourceResponse

from models.language.yes_no import question
from server.chapters import LATEST, start_chapters
from server.errors import ApiError
from server.moments import clamp, start_moments, tile
from server.routes.deps import services
from server.routes.json_body import json_body, openapi_body
from server.routes.sse import event_stream
from server.routes.videos import check_id
from server.runs import Run
from server.schemas import ChaptersRequest, ChaptersResult, ErrorBody, MomentsRequest, MomentsResult
from server.services import Services
from server.serving import bounds, check_prompt, load_encoded, whole_result
from server.tenants import request_tenant
from server.vtt import chapters_vtt

router = APIRouter()
ERRORS = {status: {"model": ErrorBody} for status in (401, 404, 409, 422, 429, 500, 501, 503)}


async def respond(run: Run, stream: bool, svc: Services, request: Request):  # type: ignore[no-untyped-def]
    if stream:
        return EventSourceResponse(event_stream(run.events, svc.settings.sse_ping_s, run.cancel),
                                   headers={"Cache-Control": "no-cache"})
    return await whole_result(run.events, run.cancel, request)


@router.post("/videos/{video_id}/moments", response_model=MomentsResult, responses={
    200: {"content": {"text/event-stream": {}}, "description": "a `moment` event per window as it is scored, then "
          "one `done` (the top_k moments) or `error`; with `stream: false`, the `done` body as JSON"}, **ERRORS},
    openapi_extra=openapi_body(MomentsRequest))
async def find_moments(video_id: str, request: Request,  # type: ignore[no-untyped-def]
                       body: MomentsRequest = Depends(json_body(MomentsRequest)), svc: Services = Depends(services),
                       tenant: str = Depends(request_tenant)):
    received_at = time.perf_counter()
    await check_prompt(svc, question(body.query))
    loading = time.perf_counter()
    encoded = await load_encoded(svc, check_id(video_id, tenant))
    start, end = clamp(encoded, *bounds(encoded, body.start_s, body.end_s, body.last_s))
    stride, param = (body.stride_s, "stride_s") if body.stride_s is not None else (body.window_s, "window_s")
    spans = tile(start, end, body.window_s, stride, svc.settings.max_moment_windows, param)
    run = start_moments(svc, encoded, spans, body.query, body.top_k, received_at, time.perf_counter() - loading,
                        tenant)
    return await respond(run, body.stream, svc, request)


@router.post("/videos/{video_id}/chapters", response_model=ChaptersResult, responses={
    200: {"content": {"text/event-stream": {}}, "description": "a `chapter` event per chapter as its caption "
          "completes, `summary` events (its text as it comes), then one `done` or `error`; with `stream: false`, "
          "the `done` body as JSON"}, **ERRORS},
    openapi_extra=openapi_body(ChaptersRequest))
async def read_chapters(video_id: str, request: Request,  # type: ignore[no-untyped-def]
                        body: ChaptersRequest = Depends(json_body(ChaptersRequest)),
                        svc: Services = Depends(services), tenant: str = Depends(request_tenant)):
    received_at = time.perf_counter()
    scoped = check_id(video_id, tenant)
    status = await svc.jobs.status(scoped)
    loading = time.perf_counter()
    encoded = await load_encoded(svc, scoped)
    live = status is not None and status.get("kind") == "stream"  # its windows change: nothing to cache
    run = await start_chapters(svc, scoped, encoded, body, not live, received_at, time.perf_counter() - loading,
                               tenant)
    return await respond(run, body.stream, svc, request)


@router.get("/videos/{video_id}/chapters.vtt", response_class=Response, responses={
    200: {"content": {"text/vtt": {}}, "description": "the chapters last computed for the video, as WebVTT "
          "chapter cues"}, **{status: {"model": ErrorBody} for status in (401, 404)}})
async def chapters_track(video_id: str, svc: Services = Depends(services),
                         tenant: str = Depends(request_tenant)) -> Response:
    scoped = check_id(video_id, tenant)
    data = await svc.store.get_result(scoped, LATEST)
    if data is None:
        if await svc.jobs.status(scoped) is None:
            raise ApiError(404, "not_found", "no such video")
        raise ApiError(404, "no_chapters", f"no chapters yet: POST /videos/{video_id}/chapters first")
    return Response(chapters_vtt(json.loads(data)["chapters"]), media_type="text/vtt; charset=utf-8")
