"""POST /videos/{id}/ask: the answer as server-sent events, or one JSON object."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.sse import KEEPALIVE_COMMENT, EventSourceResponse, format_sse_event
from starlette.concurrency import run_in_threadpool

from models.encoded import EncodedFormatError, EncodedVideo
from models.sampling import SamplingParams
from models.prompt import prompt_ids
from server.errors import ApiError
from server.routes.deps import services
from server.routes.videos import check_id
from server.asks import Ask
from server.engine import EngineDead, Overloaded
from server.schemas import Answer, AskRequest, ErrorBody
from server.services import Services

router = APIRouter()


async def load_encoded(svc: Services, video_id: str) -> EncodedVideo:
    status = await svc.jobs.status(video_id)
    if status is None:
        raise ApiError(404, "not_found", "no such video")
    if status["status"] == "processing":
        raise ApiError(409, "not_ready", "the video is still being processed", {"Retry-After": "2"})
    if status["status"] == "failed":
        raise ApiError(409, "video_failed", f"processing the video failed: {status.get('error')}; send it again")
    # A ready status has already been checked against the store's tokens.
    encoded = svc.hot.get(video_id)
    if encoded is None:
        data = await svc.store.get_tokens(video_id)
        if data is None:
            svc.metrics.cache_misses.labels("ask").inc()
            raise ApiError(404, "not_found", "the video's tokens have expired from the cache; send it again")
        try:
            encoded = await run_in_threadpool(EncodedVideo.from_bytes, data)
        except EncodedFormatError as exc:
            raise ApiError(500, "cache_corrupt", "the cached tokens are unreadable; send the video again") from exc
        svc.hot.put(video_id, encoded)
    svc.metrics.cache_hits.labels("ask").inc()
    return encoded


def check_question(svc: Services, question: str) -> None:
    cfg = svc.model.config
    n = len(prompt_ids(svc.model.tokenizer, cfg, question))
    if n + cfg.inference_max_length >= cfg.tokenizer_model_max_length:
        raise ApiError(422, "question_too_long", f"the prompt takes {n} tokens, leaving no room for the video")


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


async def cancel_on_disconnect(request: Request, ask: Ask) -> None:
    """A non-streamed client that leaves stops its answer too (the body is read already,
    so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    ask.cancel()


def submit(svc: Services, ask: Ask) -> None:
    try:
        svc.engine.submit(ask)
    except Overloaded as exc:
        svc.metrics.rejected.labels("queue_full").inc()
        raise ApiError(429, "overloaded", "too many questions are waiting; try again shortly",
                       {"Retry-After": "1"}) from exc
    except EngineDead as exc:
        raise ApiError(503, "worker_dead", str(exc)) from exc


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 404, 409, 422, 429, 500, 503)
}


@router.post("/videos/{video_id}/ask", response_model=Answer, responses={
    200: {"content": {"text/event-stream": {}}, "description": "`token` events, then one `done` (an Answer) "
          "or `error` event; with `stream: false`, the Answer as JSON"}, **ERRORS})
async def ask_video(video_id: str, body: AskRequest, request: Request,  # type: ignore[no-untyped-def]
                    svc: Services = Depends(services)):
    received_at = time.perf_counter()
    if body.max_new_tokens > svc.settings.max_new_tokens:
        raise ApiError(422, "invalid_request", f"max_new_tokens: at most {svc.settings.max_new_tokens}")
    check_question(svc, body.question)
    loading = time.perf_counter()
    encoded = await load_encoded(svc, check_id(video_id))
    params = SamplingParams(body.max_new_tokens, body.temperature, body.top_p, body.seed, body.ignore_eos)
    ask = Ask(encoded, body.question, params, svc.metrics, asyncio.get_running_loop(), received_at)
    ask.timings["cache_load_s"] = time.perf_counter() - loading
    svc.metrics.cache_load.observe(ask.timings["cache_load_s"])
    submit(svc, ask)
    if body.stream:
        return EventSourceResponse(sse(ask, svc.settings.sse_ping_s), headers={"Cache-Control": "no-cache"})
    watcher = asyncio.create_task(cancel_on_disconnect(request, ask))
    try:
        kind, payload = await ask.events.get()
        while kind == "token":
            kind, payload = await ask.events.get()
        if kind == "error":
            status = 503 if payload["code"] in ("worker_dead", "shutting_down") else 500
            raise ApiError(status, payload["code"], payload["message"])
        return payload
    finally:
        watcher.cancel()
        ask.cancel()
