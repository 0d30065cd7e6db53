"""The one place the model runs: a worker thread that owns the device.

Questions wait in a bounded FIFO queue; past its bound they are refused at once
(the caller answers 429) instead of piling up. Admitted questions are prefilled together
in batches of up to `max_batch` (left padding and an attention mask) and decoded
together, one token per question per round; up to `max_running` questions are in
flight. Each round also runs at most one step of ingest work (a batch of frames through
the towers), so a long ingest slows answers down a little but never stops them, and
answers never stop an ingest.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from models.build import BuiltInputs, build_inputs, compression_summary
from models.encoded import EncodedVideo
from models.generate import BatchDecoder, Detokenizer, SamplingParams, default_stop_ids
from models.model import LongVU
from server.metrics import Metrics

log = logging.getLogger("longvu.scheduler")
T = TypeVar("T")


class Overloaded(Exception):
    pass


@dataclass
class Ask:
    """One question, from admission to its last event. Events go to `events` on `loop`:
    ("token", text), then ("done", {...}) or ("error", {...})."""

    encoded: EncodedVideo
    question: str
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    received_at: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued_at: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    built: BuiltInputs | None = None
    detok: Detokenizer | None = None
    answer: list[str] = field(default_factory=list)
    generated: int = 0
    last_token_at: float = 0.0
    closed: bool = False

    def emit(self, kind: str, payload: Any) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))


@dataclass
class Batch:
    asks: list[Ask]
    decoder: BatchDecoder | None = None  # None until prefilled


class Scheduler:
    def __init__(self, model: LongVU, metrics: Metrics, max_queue: int, max_running: int, max_batch: int) -> None:
        self.model, self.metrics = model, metrics
        self.max_queue, self.max_running, self.max_batch = max_queue, max_running, max_batch
        self._waiting: deque[Ask] = deque()
        self._device_work: deque[tuple[Callable[[], Any], Future]] = deque()
        self._batches: list[Batch] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="longvu-model", daemon=True)
        self._thread.start()

    # Called from the event loop.
    def submit(self, ask: Ask) -> None:
        with self._wake:
            if len(self._waiting) >= self.max_queue:
                raise Overloaded
            self._waiting.append(ask)
            self.metrics.queue_depth.set(len(self._waiting))
            self._wake.notify()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return sum(not ask.closed for batch in self._batches for ask in batch.asks)

    # Called from ingest threads: blocks until the worker ran `work`.
    def run_on_device(self, work: Callable[[], T]) -> T:
        future: Future = Future()
        with self._wake:
            if self._stopping:
                raise RuntimeError("the model worker is stopped")
            self._device_work.append((work, future))
            self._wake.notify()
        return future.result()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(30)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._stopping or self._waiting or self._device_work or self._batches):
                    self._wake.wait()
                if self._stopping:
                    break
                self._admit()
                work = self._device_work.popleft() if self._device_work else None
            if work is not None:
                self._run_device_work(*work)
            self._batches = [batch for batch in self._batches if self._advance(batch)]
            self.metrics.running.set(self.running)
        self._fail_all("the server is shutting down")

    def _admit(self) -> None:
        room = self.max_running - self.running
        while self._waiting and room > 0:
            asks = [self._waiting.popleft() for _ in range(min(room, self.max_batch, len(self._waiting)))]
            for ask in asks:
                ask.timings["queue_wait_s"] = time.perf_counter() - ask.enqueued_at
                self.metrics.queue_wait.observe(ask.timings["queue_wait_s"])
            self._batches.append(Batch(asks))
            room -= len(asks)
        self.metrics.queue_depth.set(len(self._waiting))
        self.metrics.running.set(self.running)

    def _run_device_work(self, work: Callable[[], Any], future: Future) -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # handed to the waiting ingest thread
            future.set_exception(exc)

    def _prefill(self, batch: Batch) -> None:
        started = time.perf_counter()
        for ask in batch.asks:
            try:
                ask.built = build_inputs(self.model, ask.encoded, ask.question)
            except Exception as exc:  # this question only
                self._fail(ask, exc)
        batch.asks = [ask for ask in batch.asks if not ask.closed]
        if not batch.asks:
            return
        batch.decoder = BatchDecoder(
            self.model,
            [ask.built.inputs_embeds[0] for ask in batch.asks if ask.built is not None],
            [ask.params for ask in batch.asks],
            [default_stop_ids(self.model, ask.params) for ask in batch.asks],
        )
        for ask in batch.asks:
            ask.detok = Detokenizer(self.model.tokenizer)
            ask.timings["prefill_s"] = time.perf_counter() - started
            self.metrics.prefill.observe(ask.timings["prefill_s"])

    def _advance(self, batch: Batch) -> bool:
        """One token for every question of the batch; False once the batch is finished."""
        try:
            if batch.decoder is None:
                self._prefill(batch)
                if batch.decoder is None:
                    return False
            tokens = batch.decoder.step([ask.cancelled.is_set() for ask in batch.asks])
        except Exception as exc:  # reported to these clients only; the worker goes on
            for ask in batch.asks:
                self._fail(ask, exc)
            return False
        for ask, token in zip(batch.asks, tokens, strict=True):
            if ask.closed:
                continue
            if token is None:
                self._finish(ask)
            else:
                self._token(ask, token)
        if batch.decoder.done:
            for ask in batch.asks:
                if not ask.closed:
                    self._finish(ask)
            return False
        return True

    def _fail(self, ask: Ask, exc: Exception) -> None:
        log.exception("generation failed", exc_info=exc)
        ask.closed = True
        ask.emit("error", {"code": "generation_failed", "message": f"generation failed ({type(exc).__name__})"})

    def _token(self, ask: Ask, token: int) -> None:
        now = time.perf_counter()
        if ask.generated == 0:
            ask.timings["ttft_s"] = now - ask.received_at
            self.metrics.ttft.observe(ask.timings["ttft_s"])
        else:
            self.metrics.inter_token.observe(now - ask.last_token_at)
        ask.generated += 1
        ask.last_token_at = now
        self.metrics.generated_tokens.inc()
        assert ask.detok is not None
        text = ask.detok.push(token)
        if text:
            ask.answer.append(text)
            ask.emit("token", {"text": text})

    def _finish(self, ask: Ask) -> None:
        ask.closed = True
        if ask.cancelled.is_set():
            self.metrics.cancelled.inc()
            return
        assert ask.detok is not None and ask.built is not None
        tail = ask.detok.flush()
        if tail:
            ask.answer.append(tail)
            ask.emit("token", {"text": tail})
        built = ask.built
        self.metrics.visual_tokens_before.inc(built.visual_tokens_before)
        self.metrics.visual_tokens_after.inc(built.visual_tokens_after)
        ask.timings["total_s"] = time.perf_counter() - ask.received_at
        self.metrics.ask_latency.observe(ask.timings["total_s"])
        ask.emit("done", {
            "answer": "".join(ask.answer),
            "usage": {
                "prompt_tokens": built.prompt_tokens,
                "text_tokens": int(built.input_ids.numel()) - 1,
                "visual_tokens": built.visual_tokens_after,
                "completion_tokens": ask.generated,
            },
            "timings": {k: round(v, 6) for k, v in ask.timings.items()},
            "compression": compression_summary(ask.encoded, built),
        })

    def _fail_all(self, message: str) -> None:
        for ask in [*(a for batch in self._batches for a in batch.asks if not a.closed), *self._waiting]:
            ask.emit("error", {"code": "shutting_down", "message": message})
        for _, future in self._device_work:
            future.set_exception(RuntimeError(message))
