"""POST /videos/{id}/ask: the answer as server-sent events, or one JSON object."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.sse import KEEPALIVE_COMMENT, EventSourceResponse, format_sse_event

from server.asks import Ask
from server.routes.deps import services
from server.routes.json_body import json_body, openapi_body
from server.routes.videos import check_id
from server.schemas import Answer, AskRequest, ErrorBody
from server.services import Services
from server.serving import check_prompt, load_encoded, start_ask, time_range, whole_answer
from server.tenants import request_tenant

router = APIRouter()


async def sse(ask: Ask, ping_s: float) -> AsyncIterator[bytes]:
    try:
        while True:
            try:
                kind, payload = await asyncio.wait_for(ask.events.get(), ping_s)
            except TimeoutError:
                yield KEEPALIVE_COMMENT
                continue
            data = payload.model_dump_json() if isinstance(payload, Answer) else _json(payload)
            yield format_sse_event(data_str=data, event=kind)
            if kind in ("done", "error"):
                return
    finally:
        ask.cancel()  # a client gone mid-answer frees its slot at the next round


def _json(payload: object) -> str:
    return json.dumps(payload, ensure_ascii=False)


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
        return EventSourceResponse(sse(ask, svc.settings.sse_ping_s), headers={"Cache-Control": "no-cache"})
    return await whole_answer(ask, request)
