"""Chat completions over the shared engine: messages become a conversation and one video,
the video becomes cached tokens (ingested first when it is new), and the engine's events
become OpenAI's objects."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import PurePath

from fastapi import Request
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.concurrency import run_in_threadpool

from models.language.prompt import Turn
from server.asks import Ask
from server.errors import ApiError, as_api_error, openai_type
from server.ingest.errors import IngestError
from server.ingest.intake import fetch_url, receive_data_url
from server.openai.protocol import (
    LONGVU_SCHEME,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    ModelCard,
    ModelList,
    TextPart,
    VideoPart,
    completion_id,
)
from server.routes.videos import check_id
from server.schemas import Answer
from server.services import Services
from server.serving import (
    ANSWERABLE,
    check_prompt,
    engine_error,
    ingest,
    load_encoded,
    start_ask,
    time_range,
    until_disconnect,
    until_ready,
)
from server.settings import Settings
from server.tenants import public

DEFAULT_MAX_TOKENS = 1024


def served_model_name(settings: Settings) -> str:
    if settings.served_model_name:
        return settings.served_model_name
    if settings.checkpoint:
        return PurePath(settings.checkpoint).name if settings.checkpoint.startswith(("/", ".")) else settings.checkpoint
    return "longvu-tiny-demo"


def list_models(svc: Services) -> ModelList:
    return ModelList(data=[ModelCard(id=served_model_name(svc.settings), created=int(svc.started_at))])


@dataclass
class Chat:
    turns: list[Turn]
    video_url: str


def parse_messages(messages: list[ChatMessage]) -> Chat:
    turns: list[Turn] = []
    video: str | None = None
    for message in messages:
        role = "system" if message.role == "developer" else message.role
        parts = message.parts()
        videos = [p.video_url.url for p in parts if isinstance(p, VideoPart)]
        if videos and (role != "user" or video is not None or len(videos) > 1):
            raise ApiError(400, "invalid_request", "a conversation holds exactly one video, in a user message")
        if videos:
            video = videos[0]
        turns.append(Turn(role, "\n".join(p.text for p in parts if isinstance(p, TextPart)), bool(videos)))
    if video is None:
        raise ApiError(400, "invalid_request", "the conversation needs a video_url content part")
    return Chat(turns, video)


async def resolve_video(svc: Services, url: str, tenant: str) -> tuple[str, bool]:
    """The video's scoped id and whether it is ready: an uploaded one by id, or a new one
    taken in through the same intake, guard and limits as POST /videos."""
    if url.startswith(LONGVU_SCHEME):
        video_id = check_id(url[len(LONGVU_SCHEME):], tenant)
        status = await svc.jobs.status(video_id)
        if status is None:
            raise ApiError(404, "not_found", f"no video {public(video_id)}; upload it first")
        return video_id, status["status"] in ANSWERABLE
    if url.startswith("data:"):
        received = await run_in_threadpool(receive_data_url, url, svc.settings)
    else:
        received = await fetch_url(url, svc.settings)
    status, ready = await ingest(svc, received, tenant)
    return status["id"], ready


class StopText:
    """Cuts the answer at the first stop string, holding back text that may begin one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops, self.pending, self.stopped = stops, "", False
        self.hold = max((len(s) for s in stops), default=1) - 1

    def feed(self, text: str) -> str:
        self.pending += text
        found = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if found:
            out, self.pending, self.stopped = self.pending[: min(found)], "", True
            return out
        cut = max(0, len(self.pending) - self.hold)
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


@dataclass
class Ending:
    finish_reason: str
    usage: CompletionUsage


async def answer_text(ask: Ask, stops: StopText) -> AsyncIterator[str | Ending]:
    """Text deltas, then one Ending. An engine error is an ApiError."""
    while True:
        kind, payload = await ask.events.get()
        if kind == "token":
            text = stops.feed(payload["text"])
            if text:
                yield text
            if stops.stopped:
                ask.cancel()
                prompt = ask.built.prompt_tokens if ask.built else 0
                yield Ending("stop", CompletionUsage(prompt_tokens=prompt, completion_tokens=ask.generated,
                                                     total_tokens=prompt + ask.generated))
                return
        elif kind == "done":
            assert isinstance(payload, Answer)
            tail = stops.flush()
            if tail:
                yield tail
            usage = payload.usage
            yield Ending(payload.finish_reason, CompletionUsage(
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                total_tokens=usage.prompt_tokens + usage.completion_tokens))
            return
        else:
            raise engine_error(payload)


async def create_chat_completion(svc: Services, body: ChatCompletionRequest, request: Request,  # type: ignore[no-untyped-def]
                                 tenant: str):
    received_at = time.perf_counter()
    name = served_model_name(svc.settings)
    if body.model != name:
        raise ApiError(404, "model_not_found", f"the model {body.model!r} does not exist; this server serves {name!r}")
    chat = parse_messages(body.messages)
    max_new = body.max_completion_tokens or body.max_tokens or min(DEFAULT_MAX_TOKENS, svc.settings.max_new_tokens)
    await check_prompt(svc, chat.turns)
    params = svc.model.generation.params(max_new, body.temperature, body.top_p, body.top_k,
                                        body.repetition_penalty, body.seed, body.ignore_eos)
    video_id, ready = await resolve_video(svc, chat.video_url, tenant)

    async def begin() -> Ask:
        loading = time.perf_counter()
        encoded = time_range(await load_encoded(svc, video_id), body.start_s, body.end_s, body.last_s)
        return start_ask(svc, encoded, chat.turns, params, received_at, time.perf_counter() - loading, tenant)

    if not body.stream:
        async for _ in until_ready(svc, video_id, svc.settings.chat_ingest_wait_s):
            pass
        ask = await begin()
        text, ending = [], None
        async with until_disconnect(request, ask.cancel):
            async for item in answer_text(ask, StopText(body.stops)):
                if isinstance(item, Ending):
                    ending = item
                else:
                    text.append(item)
        assert ending is not None
        return ChatCompletion(model=name, usage=ending.usage, choices=[Choice(
            message=AssistantMessage(content="".join(text)), finish_reason=ending.finish_reason)])

    ask = await begin() if ready else None  # errors before the stream starts keep their status
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return EventSourceResponse(stream_chunks(svc, video_id, ask, begin, name, include_usage, body.stops),
                               headers={"Cache-Control": "no-cache"})


async def stream_chunks(svc: Services, video_id: str, ask: Ask | None, begin, name: str,  # type: ignore[no-untyped-def]
                        include_usage: bool, stops: list[str]) -> AsyncIterator[bytes]:
    chunk_id, created = completion_id(), int(time.time())

    def chunk(delta: Delta, finish: str | None = None, usage: CompletionUsage | None = None,
              choices: bool = True) -> bytes:
        body = ChatCompletionChunk(id=chunk_id, created=created, model=name, usage=usage,
                                   choices=[ChunkChoice(delta=delta, finish_reason=finish)] if choices else [])
        return format_sse_event(data_str=body.model_dump_json(exclude_none=True))

    try:
        if ask is None:
            async for status in until_ready(svc, video_id, svc.settings.chat_ingest_wait_s):
                yield f": ingest {status.get('stage', 'queued')} {100 * status.get('progress', 0.0):.0f}%\n\n".encode()
            ask = await begin()
        yield chunk(Delta(role="assistant", content=""))
        async for item in answer_text(ask, StopText(stops)):
            if isinstance(item, Ending):
                yield chunk(Delta(), item.finish_reason)
                if include_usage:
                    yield chunk(Delta(), usage=item.usage, choices=False)
            else:
                yield chunk(Delta(content=item))
    except (ApiError, IngestError) as caught:
        exc = as_api_error(caught)
        error = {"message": exc.message, "type": openai_type(exc.status), "param": None, "code": exc.code}
        yield format_sse_event(data_str=json.dumps({"error": error}))
    finally:
        if ask is not None:
            ask.cancel()
    yield format_sse_event(data_str="[DONE]")
