"""The one place the model runs: a worker thread that owns the device.

Each round it runs, in order: at most one piece of ingest work (a batch of frames through
the towers) when ingest is within its share of the device (`DeviceShare`: all of it when no
question is answering), the admission of waiting questions and windows to score (FIFO;
`server/scoring.py`) while the decoding takes more, building each one's inputs (the query,
STC), and the decoding's own round
(`server/decoding`: with local decoding, one packed prefill pass and one decode step). So a
question that arrives mid-answer starts at the next round, and a long ingest slows running
answers by its share at most.

Faults: an exception while building fails that question, and the worker goes on. If the
worker itself dies, `dead` says why, every waiter gets an error at once, and new work is
refused (readiness turns 503). A question whose client leaves ends at the next round,
queued or answering. On shutdown, `end_answers_after` gives running answers a grace
period; then they end with a `shutting_down` error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from models import arithmetic
from models.build import build_inputs
from models.model import LongVU
from models.vision.encode import encode_video
from models.vision.encoded import EncodedVideo
from models.vision.frames import Frame
from server.asks import Ask
from server.decoding import Decoding
from server.device_share import DeviceShare
from server.metrics import Metrics

if TYPE_CHECKING:
    from server.scoring import WindowScore

log = logging.getLogger("longvu.engine")
T = TypeVar("T")


class Overloaded(Exception):
    pass


class EngineDead(RuntimeError):
    pass


class Engine:
    def __init__(self, model: LongVU, metrics: Metrics, decoding: Decoding, max_queue: int,
                 ingest_share: float = 0.3) -> None:
        self.model, self.metrics, self.decoding, self.max_queue = model, metrics, decoding, max_queue
        decoding.wake = self.notify  # an answer that ends elsewhere frees room for the waiting
        self.share = DeviceShare(ingest_share)
        self._waiting: deque[Ask | WindowScore] = deque()  # questions and windows to score, first come first
        self._device_work: deque[tuple[Callable[[], Any], Future]] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._answers_deadline: float | None = None  # monotonic; set when the server drains
        self.dead: str | None = None
        self._thread = threading.Thread(target=self._loop, name="longvu-model", daemon=True)
        self._thread.start()

    # Any thread.
    def submit(self, ask: Ask | WindowScore) -> None:
        with self._wake:
            if self.dead is not None:
                raise EngineDead(self.dead)
            if self._answers_deadline is not None:
                raise EngineDead("the server is shutting down")
            if len(self._waiting) >= self.max_queue:
                raise Overloaded
            self._waiting.append(ask)
            self._count_waiting()
            self._wake.notify()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return self.decoding.running

    def run_on_device(self, work: Callable[[], T]) -> T:
        """Blocks until the worker ran `work` (ingest threads use it)."""
        future: Future = Future()
        with self._wake:
            if self.dead is not None:
                raise EngineDead(self.dead)
            if self._stopping:
                raise EngineDead("the model worker is stopped")
            self._device_work.append((work, future))
            self._count_waiting()
            self._wake.notify()
        return future.result()

    def notify(self) -> None:
        """From any thread: something changed that the worker may act on."""
        with self._wake:
            self._wake.notify()

    def warm_up(self) -> None:
        """A question's path once, so that the first real one pays no start-up costs."""
        self.run_on_device(self._warm_up)

    def end_answers_after(self, grace_s: float) -> None:
        """Questions answering now may finish within `grace_s`; the rest then end with a
        `shutting_down` error, and new ones are refused at once."""
        with self._wake:
            self._answers_deadline = time.monotonic() + grace_s
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(30)
        self.decoding.close()

    # The worker thread.
    def _loop(self) -> None:
        last_round = time.perf_counter()
        try:
            while True:
                with self._wake:
                    while not self._has_work():
                        self._wake.wait(self._until_deadline() if self.decoding.running or self._waiting else None)
                    if self._stopping:
                        break
                    self._sweep_cancelled()
                    if self._answers_deadline is not None and time.monotonic() >= self._answers_deadline:
                        self._end_answers("shutting_down", "the server is shutting down")
                    answering = bool(self.decoding.busy or self._waiting)
                    contended = answering and bool(self._device_work)
                    due = self._device_work and self.share.ingest_due(answering)
                    work = self._device_work.popleft() if due else None
                    self._count_waiting()
                ingest_s = 0.0
                if work is not None:
                    started = time.perf_counter()
                    self._run_device_work(*work)
                    ingest_s = time.perf_counter() - started
                self._round()
                now = time.perf_counter()
                if contended:  # the time both wanted the device: all that was not ingest was theirs
                    self.share.spent(ingest_s, now - last_round - ingest_s)
                last_round = now
                self.metrics.ingest_share.set(self.share.ingest_fraction)
        except BaseException as exc:  # the worker must not vanish silently
            self.dead = f"the model worker stopped ({type(exc).__name__}: {exc})"
            log.critical("%s", self.dead, exc_info=exc)
            self._fail_all("worker_dead", self.dead)
            return
        self._fail_all("shutting_down", "the server is shutting down")

    def _has_work(self) -> bool:
        ending = self._until_deadline() == 0.0 and bool(self.decoding.running or self._waiting)
        admitting = bool(self._waiting) and self.decoding.has_room
        return self._stopping or bool(self._device_work) or self.decoding.busy or admitting or ending

    def _until_deadline(self) -> float | None:
        """Seconds until running answers must end (None: no deadline)."""
        if self._answers_deadline is None:
            return None
        return max(0.0, self._answers_deadline - time.monotonic())

    def _sweep_cancelled(self) -> None:
        """Queued questions whose client left end now, not when a slot frees."""
        if any(ask.cancelled.is_set() for ask in self._waiting):
            for ask in [a for a in self._waiting if a.cancelled.is_set()]:
                self._waiting.remove(ask)
                ask.on_cancelled()

    def _end_answers(self, code: str, message: str) -> None:
        """Every question, answering or queued, ends with this error."""
        self.decoding.end_all(code, message)
        for ask in self._waiting:
            ask.on_error(code, message)
        self._waiting.clear()

    def _round(self) -> None:
        self._admit_waiting()
        self.decoding.round()

    def _admit_waiting(self) -> None:
        """Waiting questions, first come first, while the decoding takes more: each one's
        inputs are built here, on the device."""
        while self.decoding.has_room:
            with self._wake:
                if not self._waiting:
                    return
                ask = self._waiting.popleft()
                self._count_waiting()
            if ask.cancelled.is_set():  # left while waiting: never built
                ask.on_cancelled()
                continue
            ask.on_admitted()
            try:
                built = build_inputs(self.model, ask.encoded, ask.question)
            except Exception as exc:  # this question only
                log.error("building a question's inputs failed", exc_info=exc)
                ask.on_error("generation_failed", f"generation failed ({type(exc).__name__})")
                continue
            ask.begin(self.decoding, built, self.model.tokenizer)

    def _run_device_work(self, work: Callable[[], Any], future: Future) -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # handed to the waiting ingest thread
            future.set_exception(exc)

    def _fail_all(self, code: str, message: str) -> None:
        with self._wake:
            work, self._device_work = list(self._device_work), deque()
            self._end_answers(code, message)
        for _, future in work:
            future.set_exception(EngineDead(message))
        self._count_waiting()

    def _count_waiting(self) -> None:
        questions = len(self._waiting)
        self.metrics.questions_waiting.set(questions)
        self.metrics.queue_depth.set(questions)
        self.metrics.ingest_steps_waiting.set(len(self._device_work))

    @torch.inference_mode()
    def _warm_up(self) -> None:
        """An ingest's and a question's whole paths once: two made-up frames through
        preprocessing, the towers, the pruning kernel and fusion; a made-up video long enough
        for the STC regime, a long prefill, a few tokens. Each kernel compiles now, not on
        the first upload or question."""
        started = time.perf_counter()
        encode_video(self.model, [Frame(i, float(i), np.zeros((48, 64, 3), dtype=np.uint8)) for i in range(2)])
        cfg = self.model.config
        frames = arithmetic.stc_from(cfg, prompt_len=1)  # STC for any prompt
        video = EncodedVideo.made_up(frames, cfg.query_num_list[0], cfg.vision_hidden_size)
        self.decoding.warm_up(build_inputs(self.model, video, "warm up"))
        log.info("warmed up in %.2f s", time.perf_counter() - started)
