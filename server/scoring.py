"""Yes/no scores for many windows of a video, through the engine like questions.

Each window is a `WindowScore`: the engine builds its inputs (the window's frames, the
yes/no question) and hands it to the decoding, which scores it in a packed prefill pass
beside other windows and prompts (`models.language.batching`). `WindowScorer` feeds one request's
windows to the engine a few at a time, so questions that arrive meanwhile are admitted
between them, and gives back each score as it comes. Moments (and watches) build on it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from transformers import PreTrainedTokenizerBase

from models.build import BuiltInputs
from models.language.sampling import SamplingParams
from models.language.yes_no import YesNo
from models.vision.encoded import EncodedVideo
from server.engine import Engine, Overloaded
from server.metrics import Metrics

if TYPE_CHECKING:
    from server.decoding import Decoding

@dataclass(frozen=True)
class Scoring:
    """Whether windows can be scored in this process, decided once at start-up: the yes/no
    tokens, or why not (the decoding runs elsewhere, or the tokenizer cannot tell the two apart)."""

    yes_no: YesNo | None
    unavailable: str | None

    @classmethod
    def of(cls, decoding: Decoding, tokenizer: PreTrainedTokenizerBase) -> Scoring:
        if decoding.scoring_unavailable is not None:
            return cls(None, decoding.scoring_unavailable)
        try:
            return cls(YesNo.from_tokenizer(tokenizer), None)
        except ValueError as exc:
            return cls(None, str(exc))


Report = Callable[[int, str, object], None]  # (window index, "scored" or "error", score or error body)


@dataclass(eq=False)
class WindowScore:
    """One window's score, the engine's item beside questions (`server.asks.Ask`)."""

    index: int
    encoded: EncodedVideo
    question: str
    scorer: YesNo
    cancelled: threading.Event
    report: Report
    params: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=1))
    built: BuiltInputs | None = None
    closed: bool = False

    def begin(self, decoding: Decoding, built: BuiltInputs, tokenizer: PreTrainedTokenizerBase) -> None:
        self.built = built
        decoding.score(self, built)

    def on_admitted(self) -> None:
        pass

    def on_scored(self, score: float) -> None:
        self._end("scored", score)

    def on_cancelled(self) -> None:
        self._end("error", {"code": "cancelled", "message": "the client went away"})

    def on_error(self, code: str, message: str) -> None:
        self._end("error", {"code": code, "message": message})

    def _end(self, kind: str, payload: object) -> None:
        if not self.closed:
            self.closed = True
            self.report(self.index, kind, payload)


class ScoringFailed(Exception):
    def __init__(self, body: dict) -> None:
        super().__init__(body["message"])
        self.body = body


class WindowScorer:
    """One request's prompts (a window and its question), at most `in_flight` in the engine
    at once, scored in any order. `start` submits the first ones (the engine's refusal,
    Overloaded or EngineDead, is the request's); `results` yields (index, score, the
    window's built inputs), submitting the rest as room frees."""

    def __init__(self, engine: Engine, metrics: Metrics, scorer: YesNo, prompts: list[tuple[EncodedVideo, str]],
                 in_flight: int) -> None:
        self.engine, self.metrics, self.scorer = engine, metrics, scorer
        self.in_flight = max(1, in_flight)
        self.cancelled = threading.Event()
        self._pending = deque(enumerate(prompts))
        self._items: dict[int, WindowScore] = {}
        self._results: asyncio.Queue[tuple[int, str, object]] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        try:
            self._submit()
        except Overloaded:  # refused only when not even one window found room
            if not self._items:
                raise

    def cancel(self) -> None:
        """Windows queued or in the batch end at the engine's next round; those not yet
        submitted never are."""
        self.cancelled.set()
        self._pending.clear()

    async def results(self) -> AsyncIterator[tuple[int, float, BuiltInputs]]:
        while self._items or self._pending:
            try:
                self._submit()
            except Overloaded:  # the queue is full of questions: a window waits its turn
                if not self._items:
                    await asyncio.sleep(0.05)
                    continue
            index, kind, payload = await self._results.get()
            item = self._items.pop(index)
            if kind == "error":
                self.cancel()
                raise ScoringFailed(payload)  # type: ignore[arg-type]
            self.metrics.windows_scored.inc()
            assert item.built is not None
            yield index, float(payload), item.built  # type: ignore[arg-type]

    def _submit(self) -> None:
        while self._pending and len(self._items) < self.in_flight and not self.cancelled.is_set():
            index, (window, question) = self._pending[0]
            item = WindowScore(index, window, question, self.scorer, self.cancelled, self._report)
            self.engine.submit(item)  # Overloaded or EngineDead: the window stays pending
            self._pending.popleft()
            self._items[index] = item

    def _report(self, index: int, kind: str, payload: object) -> None:
        self._loop.call_soon_threadsafe(self._results.put_nowait, (index, kind, payload))


def prompt_scorer(engine: Engine, metrics: Metrics, scorer: YesNo,
                  in_flight: int) -> Callable[[list[tuple[EncodedVideo, str]]], Awaitable[list[float]]]:
    """Scores of prompts in their order, through the engine (watches score this way)."""
    async def score(prompts: list[tuple[EncodedVideo, str]]) -> list[float]:
        run = WindowScorer(engine, metrics, scorer, prompts, in_flight)
        scores = [0.0] * len(prompts)
        try:
            async for index, value, _ in run.results():
                scores[index] = value
        finally:
            run.cancel()
        return scores
    return score
