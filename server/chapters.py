"""A video's chapters: a caption for each part (map) and a summary of the whole (reduce),
cached with the video's tokens.

Map: one caption question per chapter, answered from that chapter's frames (the time-range
path), all handed to the engine at once so the continuous batch answers them together;
each is an event as it completes. Reduce: one question about the whole video with the
captions and their times in the prompt; its tokens stream as `summary` events. Answers are
greedy, so the cached result is the one a second request would compute.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from models.language.prompt import prompt_ids
from models.language.sampling import SamplingParams
from models.vision.encoded import EncodedVideo
from server.asks import Ask
from server.engine import Overloaded
from server.errors import ApiError
from server.moments import tile
from server.runs import Run
from server.schemas import Answer, Chapter, ChaptersRequest, ChaptersResult, ChaptersTimings
from server.services import Services
from server.serving import engine_error, engine_refusal, time_range

CAPTION = "Describe what happens in this part of the video in one sentence."
SUMMARY_TOKENS = 256
LATEST = "chapters"  # the result `GET /videos/{id}/chapters.vtt` serves: the last chapters computed


def every_s(encoded: EncodedVideo, asked: float | None) -> float:
    return asked if asked is not None else max(30.0, encoded.duration_s / 12)


def cache_name(body: ChaptersRequest, every: float, weights: str) -> str:
    """The result's field: its parameters and the LLM's weights (int8 captions differ)."""
    return f"chapters:{every:.3f}:{body.max_new_tokens}:{int(body.summary)}:{weights}"


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def summary_question(chapters: list[Chapter], words: int | None = None) -> str:
    """The reduce step's question; with `words`, each caption cut to that many words."""
    lines = "\n".join(f"[{clock(c.start_s)}-{clock(c.end_s)}] {' '.join(c.text.split()[:words])}" for c in chapters)
    return f"The video's chapters, with their times:\n{lines}\nSummarize the whole video in a few sentences."


async def fitting_summary_question(svc: Services, chapters: list[Chapter]) -> str:
    """The summary question, its captions cut shorter (halving their words) until the prompt
    leaves the video at least half the context: many chapters' captions would crowd it out."""
    limit = svc.model.config.tokenizer_model_max_length // 2
    words = max((len(c.text.split()) for c in chapters), default=1)
    text = summary_question(chapters)
    while words > 1 and len(await run_in_threadpool(prompt_ids, svc.model.tokenizer, svc.model.config,
                                                      text)) > limit:
        words = max(1, words // 2)
        text = summary_question(chapters, words)
    return text


async def start_chapters(svc: Services, video_id: str, encoded: EncodedVideo, body: ChaptersRequest, cacheable: bool,
                         received_at: float, cache_load_s: float, tenant: str) -> Run:
    every = every_s(encoded, body.every_s)
    spans = tile(0.0, encoded.duration_s, every, every, svc.settings.max_chapters, "every_s")
    if not spans:
        raise ApiError(422, "empty_range", "the video has no seconds to divide into chapters", param="every_s")
    name = cache_name(body, every, svc.model.weights)
    cached = await svc.store.get_result(video_id, name) if cacheable else None
    svc.metrics.chapter_requests.labels(str(cached is not None).lower()).inc()
    run = Run(svc.metrics, svc.tenant_limits.answer_started(tenant))
    if cached is not None:
        run.start(_replay(run, json.loads(cached), received_at))
    else:
        run.start(_compute(run, svc, video_id, encoded, spans, body, name if cacheable else None, received_at,
                           cache_load_s))
    return run


async def _replay(run: Run, result: dict, received_at: float) -> None:
    chapters = [Chapter(**c) for c in result["chapters"]]
    for chapter in chapters:
        run.emit("chapter", chapter)
    if result["summary"] is not None:
        run.emit("summary", {"text": result["summary"]})
    total = round(time.perf_counter() - received_at, 6)
    run.end("done", ChaptersResult(chapters=chapters, summary=result["summary"], cached=True,
                                   timings=ChaptersTimings(chapters_s=total, total_s=total)))


async def _compute(run: Run, svc: Services, video_id: str, encoded: EncodedVideo, spans: list[tuple[float, float]],
                   body: ChaptersRequest, cache_as: str | None, received_at: float, cache_load_s: float) -> None:
    loop = asyncio.get_running_loop()
    params = greedy(svc, body.max_new_tokens)
    asks: list[Ask] = []
    waits: list[asyncio.Future] = []
    try:
        for index, (a, b) in enumerate(spans):
            asks.append(Ask(encoded.window(a, b).capped(), CAPTION, params, svc.metrics, loop, received_at))
            await _submit(svc, asks[-1], cache_load_s)
            waits.append(asyncio.ensure_future(_indexed(index, asks[-1])))
        chapters: list[Chapter | None] = [None] * len(asks)
        for done in asyncio.as_completed(waits):
            index, text = await done
            a, b = spans[index]
            chapters[index] = chapter = Chapter(index=index, start_s=round(a, 3), end_s=round(b, 3), text=text)
            run.emit("chapter", chapter)
        listed = [c for c in chapters if c is not None]
        chapters_s = time.perf_counter() - received_at
        summary = None
        if body.summary:
            tokens = min(SUMMARY_TOKENS, svc.settings.max_new_tokens)
            asks.append(Ask(time_range(encoded, None, None), await fitting_summary_question(svc, listed),
                            greedy(svc, tokens), svc.metrics, loop,
                            received_at))
            await _submit(svc, asks[-1], cache_load_s)
            summary = await _answer(asks[-1], lambda text: run.emit("summary", {"text": text}))
    finally:
        for wait in waits:
            wait.cancel()
        for ask in asks:
            ask.cancel()  # those still answering (the client left, one failed) end at the next round
    if cache_as is not None:
        data = json.dumps({"chapters": [c.model_dump() for c in listed], "summary": summary}).encode()
        await svc.store.put_result(video_id, {cache_as: data, LATEST: data})
    total = time.perf_counter() - received_at
    svc.metrics.chapters_latency.observe(total)
    run.end("done", ChaptersResult(chapters=listed, summary=summary, cached=False, timings=ChaptersTimings(
        chapters_s=round(chapters_s, 6), total_s=round(total, 6))))


def greedy(svc: Services, tokens: int) -> SamplingParams:
    """Greedy, the checkpoint's other defaults: the same answer every time, as cached."""
    return svc.model.generation.params(tokens, 0.0, None, None, None, None, False)


async def _submit(svc: Services, ask: Ask, cache_load_s: float) -> None:
    """Into the engine's queue, waiting for room while it is full of other questions (a
    dead engine or shutdown is the request's 503)."""
    ask.timings["cache_load_s"] = cache_load_s
    with engine_refusal(svc, lambda code: ask.on_error(code, "refused")):
        while True:
            try:
                svc.engine.submit(ask)
                return
            except Overloaded:
                try:
                    await asyncio.sleep(0.1)
                except asyncio.CancelledError:
                    ask.on_error("cancelled", "the client went away")  # never reached the engine
                    raise


async def _answer(ask: Ask, on_text: Callable[[str], object] = lambda _: None) -> str:
    """The answer's text once it is done; each piece goes to `on_text` as it comes. An error
    event is the request's error."""
    while True:
        kind, payload = await ask.events.get()
        if kind == "token":
            on_text(payload["text"])
        elif kind == "error":
            raise engine_error(payload)
        else:
            assert isinstance(payload, Answer)
            return payload.answer.strip()


async def _indexed(index: int, ask: Ask) -> tuple[int, str]:
    return index, await _answer(ask)
