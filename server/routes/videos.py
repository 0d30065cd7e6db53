"""POST /videos, GET /videos/{id}, DELETE /videos/{id}."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from server.errors import ApiError
from server.ingest.intake import Received, fetch_url, receive_upload
from server.routes.deps import services
from server.schemas import VideoStatus, VideoUrl
from server.services import Services
from server.serving import ingest
from server.tenants import public, request_tenant, scoped

router = APIRouter()
VIDEO_ID = re.compile(r"[0-9a-f]{64}")
MAX_JSON_BODY = 16 * 1024


def check_id(video_id: str, tenant: str) -> str:
    """The caller's scoped id for a public one (`server.tenants`); a malformed id is a 404."""
    if not VIDEO_ID.fullmatch(video_id):  # fullmatch: `$` would let a final newline through
        raise ApiError(404, "not_found", "no such video")
    return scoped(tenant, video_id)


def public_status(status: dict) -> VideoStatus:
    return VideoStatus(**dict(status, id=public(status["id"])))


def status_response(status: dict, code: int) -> JSONResponse:
    body = public_status(status).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=code, headers={"Location": f"/videos/{body['id']}"})


async def read_url(request: Request) -> str:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BODY:
            raise ApiError(413, "too_large", "the JSON body is too large")
    try:  # pydantic's parser: bounded nesting, no recursion in Python
        return VideoUrl.model_validate_json(body or b"null").url
    except (ValueError, ValidationError) as exc:
        raise ApiError(422, "invalid_request", 'send JSON {"url": "https://..."}') from exc


async def receive(request: Request, svc: Services) -> Received:
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        return await fetch_url(await read_url(request), svc.settings)
    return await receive_upload(request, svc.settings)


@router.post("/videos")
async def create_video(request: Request, svc: Services = Depends(services),
                       tenant: str = Depends(request_tenant)) -> JSONResponse:
    status, ready = await ingest(svc, await receive(request, svc), tenant)
    return status_response(status, 200 if ready else 202)


@router.get("/videos/{video_id}")
async def get_video(video_id: str, svc: Services = Depends(services),
                    tenant: str = Depends(request_tenant)) -> JSONResponse:
    status = await svc.jobs.status(check_id(video_id, tenant))
    if status is None:
        raise ApiError(404, "not_found", "no such video")
    return status_response(status, 200)


@router.delete("/videos/{video_id}", status_code=204)
async def delete_video(video_id: str, svc: Services = Depends(services),
                       tenant: str = Depends(request_tenant)) -> Response:
    video_id = check_id(video_id, tenant)
    svc.hot.discard(video_id)
    svc.jobs.cancel(video_id)  # a job or follower elsewhere stops too: its lease is deleted with the video
    svc.streams.stop(video_id)
    if not await svc.store.delete(video_id):
        raise ApiError(404, "not_found", "no such video")
    return Response(status_code=204)
