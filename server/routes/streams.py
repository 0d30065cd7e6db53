"""POST /streams: follow a live stream. Its id works with every /videos/{id} route."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from server.errors import ApiError, ShuttingDown, as_api_error
from server.ingest.errors import IngestError
from server.routes.deps import services
from server.routes.json_body import json_body, openapi_body
from server.routes.videos import status_response
from server.schemas import ErrorBody, StreamRequest, VideoStatus
from server.services import Services
from server.tenants import request_tenant

router = APIRouter()


@router.post("/streams", status_code=202, response_model=VideoStatus, responses={
    **{status: {"model": ErrorBody} for status in (401, 413, 415, 422, 503)}}, openapi_extra=openapi_body(StreamRequest))
async def create_stream(body: StreamRequest = Depends(json_body(StreamRequest)),
                        svc: Services = Depends(services), tenant: str = Depends(request_tenant)) -> JSONResponse:
    if svc.draining:
        raise ShuttingDown()
    if body.retention_s > svc.settings.stream_max_retention_s:
        raise ApiError(422, "invalid_request", f"retention_s is at most {svc.settings.stream_max_retention_s:.0f} "
                       "(LONGVU_STREAM_MAX_RETENTION_S)", param="retention_s")
    try:
        status = await svc.streams.start(body.url, body.retention_s, tenant)
    except IngestError as exc:  # the URL's errors: name the field
        error = as_api_error(exc)
        raise ApiError(error.status, error.code, error.message, error.headers, param="url") from exc
    return status_response(status, 202)
