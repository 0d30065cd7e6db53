"""POST /videos/{id}/ask: the answer as server-sent events, or one JSON object."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse

from server.routes.deps import services
from server.routes.json_body import json_body, openapi_body
from server.routes.sse import event_stream
from server.routes.videos import check_id
from server.schemas import Answer, AskRequest, ErrorBody
from server.services import Services
from server.serving import check_prompt, load_encoded, start_ask, time_range, whole_answer
from server.tenants import request_tenant

router = APIRouter()


@router.post("/videos/{video_id}/ask", response_model=Answer, responses={
    200: {"content": {"text/event-stream": {}}, "description": "`token` events, then one `done` (an Answer) "
          "or `error` event; with `stream: false`, the Answer as JSON"},
    **{status: {"model": ErrorBody} for status in (401, 404, 409, 413, 415, 422, 429, 500, 503)}},
    openapi_extra=openapi_body(AskRequest))
async def ask_video(video_id: str, request: Request,  # type: ignore[no-untyped-def]
                    body: AskRequest = Depends(json_body(AskRequest)), svc: Services = Depends(services),
                    tenant: str = Depends(request_tenant)):
    received_at = time.perf_counter()
    await check_prompt(svc, body.question)
    loading = time.perf_counter()
    encoded = time_range(await load_encoded(svc, check_id(video_id, tenant)), body.start_s, body.end_s, body.last_s)
    params = svc.model.generation.params(body.max_new_tokens, body.temperature, body.top_p, body.top_k,
                                        body.repetition_penalty, body.seed, body.ignore_eos)
    ask = start_ask(svc, encoded, body.question, params, received_at, time.perf_counter() - loading, tenant)
    if body.stream:
        return EventSourceResponse(event_stream(ask.events, svc.settings.sse_ping_s, ask.cancel), headers={"Cache-Control": "no-cache"})
    return await whole_answer(ask, request)
