"""Finding when something happens: every window of a time range scored with one yes/no
question (`server.scoring`), each score an event as it comes, then the best windows.

A window's prompt is its frames' tokens (the time-range path: `EncodedVideo.window`) and
the question built from the query; its score is P(yes) / (P(yes) + P(no)) over the first
answer token, from one prefill (`models.language.yes_no`).
"""

from __future__ import annotations

import math
import time

from models.language.yes_no import YesNo, question
from models.vision.encoded import EncodedVideo
from server.errors import ApiError
from server.runs import Run
from server.schemas import Moment, MomentsResult, MomentsTimings
from server.scoring import WindowScorer
from server.services import Services
from server.serving import engine_refusal


def tile(start: float, end: float, window_s: float, stride_s: float, limit: int, param: str) -> list[tuple[float,
                                                                                                           float]]:
    """Windows [a, b) of `window_s` seconds, one every `stride_s`, from `start` until one
    reaches `end` (the last one short). With the stride equal to the window they tile
    [start, end) exactly. More than `limit` is a 422 naming `param`."""
    count = math.ceil((end - start) / stride_s - 1e-9)
    if count > limit:
        raise ApiError(422, "too_many_windows", f"the range holds {count} windows; at most {limit} on this server: "
                       "choose a longer window or stride, or a shorter range", param=param)
    return [(start + k * stride_s, min(start + k * stride_s + window_s, end)) for k in range(count)]


def clamp(encoded: EncodedVideo, start: float, end: float) -> tuple[float, float]:
    """The range within the video (a range past its end is a 422)."""
    end = min(end, encoded.duration_s)
    if end <= start:
        raise ApiError(422, "empty_range", f"no second of the video lies in [{start}, {end})", param="start_s")
    return start, end


def yes_no(svc: Services) -> YesNo:
    """The tokens windows are scored with; 501 where they cannot be scored here."""
    if svc.scoring.yes_no is None:
        raise ApiError(501, "scoring_unavailable", svc.scoring.unavailable or "windows cannot be scored here")
    return svc.scoring.yes_no


def start_moments(svc: Services, encoded: EncodedVideo, spans: list[tuple[float, float]], query: str, top_k: int,
                  received_at: float, cache_load_s: float, tenant: str) -> Run:
    """Submit the first windows now (a full queue or a dead engine is the request's 429 or
    503); a task scores the rest."""
    asked = question(query)
    scorer = WindowScorer(svc.engine, svc.metrics, yes_no(svc), [(encoded.window(a, b), asked) for a, b in spans],
                          svc.settings.max_running)
    end = svc.tenant_limits.answer_started(tenant)
    with engine_refusal(svc, lambda _: (scorer.cancel(), end())):
        scorer.start()
    svc.metrics.moment_requests.inc()
    run = Run(svc.metrics, end)
    run.start(_score(run, svc, scorer, spans, top_k, received_at, cache_load_s))
    return run


async def _score(run: Run, svc: Services, scorer: WindowScorer, spans: list[tuple[float, float]], top_k: int,
                 received_at: float, cache_load_s: float) -> None:
    moments: list[Moment] = []
    first: float | None = None
    try:
        async for index, score, built in scorer.results():
            first = first or time.perf_counter() - received_at
            a, b = spans[index]
            moment = Moment(start_s=round(a, 3), end_s=round(b, 3), score=score,
                            seconds=[round(float(t), 3) for t in built.timestamps])
            moments.append(moment)
            run.emit("moment", moment)
    finally:
        scorer.cancel()
    total = time.perf_counter() - received_at
    svc.metrics.moments_latency.observe(total)
    best = sorted(moments, key=lambda m: (-m.score, m.start_s))[:top_k]
    run.end("done", MomentsResult(moments=best, windows=len(moments), timings=MomentsTimings(
        cache_load_s=round(cache_load_s, 6), first_moment_s=None if first is None else round(first, 6),
        total_s=round(total, 6))))
