"""What the native and the OpenAI-compatible endpoints share: taking a video in, finding
its cached tokens, and putting a question to the engine. Routes stay thin; this module
knows the services, never the request or response shapes of one API."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from models import arithmetic
from models.language.prompt import Conversation, prompt_ids
from models.language.sampling import SamplingParams
from models.vision.encoded import EncodedFormatError, EncodedVideo
from server.asks import Ask
from server.engine import EngineDead, Overloaded
from server.errors import ApiError, ShuttingDown
from server.ingest.intake import Received
from server.ingest.probe import probe
from server.live.windows import read_stream
from server.schemas import Answer
from server.services import Services
from server.tenants import scoped


async def ingest(svc: Services, received: Received, tenant: str) -> tuple[dict, bool]:
    """Start processing a received video in `tenant`'s namespace, or find it cached or in
    progress there (here or on another replica). Returns its status (its scoped id) and
    whether it is ready. The file is always consumed: handed to a job or removed."""
    started = False
    received = dataclasses.replace(received, video_id=scoped(tenant, received.video_id))
    try:
        if await svc.store.has_tokens(received.video_id):
            svc.metrics.cache_hits.labels("ingest").inc()
            status = await svc.jobs.status(received.video_id)
            return status or {"id": received.video_id, "status": "ready", "progress": 1.0}, True
        svc.metrics.cache_misses.labels("ingest").inc()
        if received.video_id not in svc.jobs.jobs:
            svc.tenant_limits.check_jobs(tenant, svc.jobs.jobs)
        info = await run_in_threadpool(probe, received.path, svc.settings)
        status = await svc.jobs.start(received, info)
        started = status is not None
        if status is None:  # another request, here or on another replica, is on it
            status = await svc.jobs.status(received.video_id) or {"id": received.video_id, "status": "processing"}
        return status, status["status"] == "ready"
    finally:
        if not started:
            received.path.unlink(missing_ok=True)


ANSWERABLE = ("ready", "live")  # a live stream answers from the windows encoded so far


async def until_ready(svc: Services, video_id: str, timeout_s: float) -> AsyncIterator[dict]:
    """The video's status while it is processed; ends once it is ready (or live). Its
    failure, its disappearance or the timeout is an ApiError."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = await svc.jobs.status(video_id)
        if status is None:
            raise ApiError(404, "not_found", "the video disappeared while it was processed")
        if status["status"] in ANSWERABLE:
            return
        if status["status"] == "failed":
            raise ApiError(422, status.get("error_code") or "video_failed", status.get("error") or "ingest failed")
        if time.monotonic() > deadline:
            raise ApiError(504, "ingest_timeout", "the video is still being processed; ask again later")
        if svc.draining:
            raise ShuttingDown()
        yield status
        await asyncio.sleep(0.25)


async def load_encoded(svc: Services, video_id: str) -> EncodedVideo:
    status = await svc.jobs.status(video_id)
    if status is None:
        raise ApiError(404, "not_found", "no such video")
    if status["status"] == "processing":
        raise ApiError(409, "not_ready", "the video is still being processed", {"Retry-After": "2"})
    if status["status"] == "failed":
        raise ApiError(409, "video_failed", f"processing the video failed: {status.get('error')}; send it again")
    if status.get("kind") == "stream":  # live or ended: its windows, read fresh (they change while live)
        encoded = await read_stream(svc.store, svc.hot, status, svc.model.config)
        svc.metrics.cache_hits.labels("ask").inc()
        return encoded
    # A ready status has already been checked against the store's tokens.
    async def read() -> EncodedVideo:
        data = await svc.store.get_tokens(video_id)
        if data is None:
            svc.metrics.cache_misses.labels("ask").inc()
            raise ApiError(404, "not_found", "the video's tokens have expired from the cache; send it again")
        try:
            return await run_in_threadpool(EncodedVideo.from_bytes, data)
        except EncodedFormatError as exc:
            raise ApiError(500, "cache_corrupt", "the cached tokens are unreadable; send the video again") from exc

    encoded = await svc.hot.load(video_id, read)
    svc.metrics.cache_hits.labels("ask").inc()
    return encoded


def time_range(encoded: EncodedVideo, start_s: float | None, end_s: float | None,
               last_s: float | None = None) -> EncodedVideo:
    """The part of the video a question is about (all of it when no bound is given; the
    last `last_s` seconds before its end, a live stream's edge), at most 400 frames once
    pruned (a live stream's cap applies to the part asked about)."""
    if start_s is None and end_s is None and last_s is None:
        return encoded.capped()
    start, end = bounds(encoded, start_s, end_s, last_s)
    if end < start:  # both bounds inclusive: start_s == end_s asks about one instant
        raise ApiError(422, "invalid_range", f"end_s ({end}) must not be before start_s ({start})", param="end_s")
    part = encoded.between(start, end)
    if part.frames_sampled == 0:
        raise ApiError(422, "empty_range", f"no cached frame lies between {start} s and {end} s")
    return part.capped()


def bounds(encoded: EncodedVideo, start_s: float | None, end_s: float | None,
           last_s: float | None) -> tuple[float, float]:
    """The seconds a request's `start_s`, `end_s` and `last_s` name (the whole video when none)."""
    start = 0.0 if start_s is None else start_s
    if last_s is not None:
        start = max(start, encoded.duration_s - last_s)
    return start, encoded.duration_s if end_s is None else end_s


async def check_prompt(svc: Services, question: str | Conversation) -> None:
    """The prompt leaves room for the video. Tokenizing takes time in proportion to the
    text, so it runs off the event loop."""
    cfg = svc.model.config
    try:
        n = len(await run_in_threadpool(prompt_ids, svc.model.tokenizer, cfg, question))
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    if not arithmetic.leaves_room(cfg, n):
        raise ApiError(422, "question_too_long", f"the prompt takes {n} tokens, leaving no room for the video",
                       param="question" if isinstance(question, str) else "messages")


def start_ask(svc: Services, encoded: EncodedVideo, question: str | Conversation, params: SamplingParams,
              received_at: float, cache_load_s: float, tenant: str) -> Ask:
    unavailable = svc.engine.decoding.unavailable
    if unavailable is not None:
        raise ApiError(503, "llm_unavailable", unavailable, {"Retry-After": RETRY_LLM_S})
    end = svc.tenant_limits.answer_started(tenant)
    ask = Ask(encoded, question, params, svc.metrics, asyncio.get_running_loop(), received_at, on_end=end)
    ask.timings["cache_load_s"] = cache_load_s
    svc.metrics.cache_load.observe(cache_load_s)
    submit(svc, ask)
    return ask


def submit(svc: Services, ask: Ask) -> None:
    """Hand a question to the engine; its refusal is the request's (429, 503) and ends the ask."""
    with engine_refusal(svc, lambda code: ask.on_error(code, "refused")):
        svc.engine.submit(ask)


@contextmanager
def engine_refusal(svc: Services, refused: Callable[[str], object]) -> Iterator[None]:
    """The engine's refusal of new work as the request's error: 429 when its queue is full,
    503 when it is dead or the server is shutting down. `refused(code)` ends what was refused."""
    try:
        yield
    except Overloaded as exc:
        svc.metrics.rejected.labels("queue_full").inc()
        refused("overloaded")
        raise ApiError(429, "overloaded", "too many questions are waiting; try again shortly",
                       {"Retry-After": "1"}) from exc
    except EngineDead as exc:
        refused("worker_dead")
        if svc.draining:
            raise ShuttingDown() from exc
        raise ApiError(503, "worker_dead", str(exc)) from exc


ENGINE_ERROR_STATUS = {"worker_dead": 503, "shutting_down": 503, "llm_unavailable": 503,
                       "cancelled": 499}  # 499: client closed
RETRY_LLM_S = "5"


def engine_error(payload: dict) -> ApiError:
    """An engine `error` event as the API error it is: 503 when the engine or the language
    model server is gone."""
    code = payload["code"]
    headers = {"Retry-After": RETRY_LLM_S} if code == "llm_unavailable" else None
    status = payload.get("status") or ENGINE_ERROR_STATUS.get(code, 500)  # a run's refusal carries its own
    return ApiError(status, code, payload["message"], headers, payload.get("param"))


async def cancel_on_disconnect(request: Request, cancel: Callable[[], object]) -> None:
    """A client that leaves stops its work (the body is read already, so the next
    message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    cancel()


@asynccontextmanager
async def until_disconnect(request: Request, cancel: Callable[[], object]) -> AsyncIterator[None]:
    """While a non-streamed result is gathered: the client leaving cancels it; leaving the
    block, for any reason, does too."""
    watcher = asyncio.create_task(cancel_on_disconnect(request, cancel))
    try:
        yield
    finally:
        watcher.cancel()
        cancel()


async def whole_result(events: asyncio.Queue, cancel: Callable[[], object], request: Request) -> Any:
    """The `done` payload of a non-streamed request (its other events skipped); stops the
    work if the client leaves."""
    async with until_disconnect(request, cancel):
        kind, payload = await events.get()
        while kind not in ("done", "error"):
            kind, payload = await events.get()
        if kind == "error":
            raise engine_error(payload)
        return payload


async def whole_answer(ask: Ask, request: Request) -> Answer:
    return await whole_result(ask.events, ask.cancel, request)
