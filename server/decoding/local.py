"""Answers decoded on our own device, in the engine's rounds (`models/language/batching.py`).

Each round: questions whose client left are dropped, one packed prefill pass runs over the
waiting prompts, one decode step over the answering ones. A question is taken while a slot
is free and the waiting prompts do not yet fill a prefill pass (one taken now and prefilled
rounds later would only wait longer). An exception in a step fails the questions that step
touched; the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from models.build import BuiltInputs
from models.language.batching import ContinuousBatch, Emitted, Sequence
from models.language.generate import default_stop_ids
from models.language.sampling import SamplingParams, generator_for
from models.language.sizing import slot_positions
from models.model import LongVU
from server.asks import Ask
from server.metrics import Metrics
from server.scoring import WindowScore

log = logging.getLogger("longvu.engine")


class LocalDecoding:
    def __init__(self, model: LongVU, metrics: Metrics, max_running: int, max_new_tokens: int,
                 prefill_tokens: int, cuda_graphs: bool, prefix_cache: int = 0) -> None:
        self.model, self.metrics = model, metrics
        max_prompt = model.config.tokenizer_model_max_length
        self.batch = ContinuousBatch(model, max_running, slot_positions(max_prompt, max_new_tokens), prefill_tokens,
                                     cuda_graphs, prefix_entries=prefix_cache, max_prompt=max_prompt)
        self._owners: dict[Sequence, Ask | WindowScore] = {}
        self._fallbacks = 0  # graph fallbacks already counted
        self.unavailable: str | None = None
        self.scoring_unavailable: str | None = None
        self.wake: Callable[[], None] = lambda: None  # its questions end in the engine's rounds

    @property
    def running(self) -> int:
        return len(self._owners)

    @property
    def busy(self) -> bool:
        return bool(self._owners)

    @property
    def has_room(self) -> bool:
        return self.batch.has_room and self.batch.unfilled < self.batch.prefill_tokens

    def start(self, ask: Ask, built: BuiltInputs) -> None:
        self._take(ask, lambda: Sequence(built.inputs_embeds[0], ask.params, default_stop_ids(self.model, ask.params),
                                         generator_for(ask.params, self.model.device)))

    def score(self, window: WindowScore, built: BuiltInputs) -> None:
        self._take(window, lambda: Sequence(built.inputs_embeds[0], window.params, frozenset(), scorer=window.scorer))

    def _take(self, owner: Ask | WindowScore, sequence: Callable[[], Sequence]) -> None:
        try:
            seq = sequence()
            self.batch.start(seq)
        except Exception as exc:  # this question only
            self._fail(owner, exc)
            return
        self._owners[seq] = owner
        self.metrics.prefix_positions.labels("reused").inc(seq.shared[1])
        self.metrics.prefix_positions.labels("prefilled").inc(seq.prompt_len - seq.shared[1])

    def round(self) -> None:
        for seq, ask in list(self._owners.items()):
            if ask.cancelled.is_set():
                self._drop(seq)
                ask.on_cancelled()
        if self.batch.prefilling:
            self._step(self.batch.prefill, list(self.batch.prefilling))
        if self.batch.decoding:
            self._step(self.batch.decode, list(self.batch.decoding))
            self._count_fallbacks()
        self.metrics.running.set(self.running)

    def end_all(self, code: str, message: str) -> None:
        for ask in self._owners.values():
            ask.on_error(code, message)
        self._owners.clear()
        self.batch.clear()
        self.metrics.running.set(0)

    def warm_up(self, built: BuiltInputs) -> None:
        seq = Sequence(built.inputs_embeds[0], SamplingParams(max_new_tokens=4), frozenset())
        self.batch.start(seq)
        while self.batch.prefilling:
            self.batch.prefill()
        while self.batch.decoding:
            self.batch.decode()
        shapes = self.batch.graph_shapes()
        for state, count in shapes.items():
            self.metrics.decode_graphs.labels(state).set(count)
        log.info("decode shapes as CUDA graphs: %d, eager: %d", shapes["captured"], shapes["eager"])

    def _count_fallbacks(self) -> None:
        fallbacks = self.batch.graph_fallbacks
        if fallbacks > self._fallbacks:
            self.metrics.decode_graph_fallbacks.inc(fallbacks - self._fallbacks)
            self._fallbacks = fallbacks

    def close(self) -> None:
        pass

    def _step(self, step: Callable[[], list[Emitted]], touched: list[Sequence]) -> None:
        try:
            emitted = step()
        except Exception as exc:  # the questions in this step fail; the others go on
            for seq in touched:
                ask = self._drop(seq)
                if ask is not None:
                    self._fail(ask, exc)
            return
        for item in emitted:
            self._deliver(item)

    def _deliver(self, item: Emitted) -> None:
        ask = self._owners[item.seq]
        if item.error is not None:  # this answer only: the batch's other rows go on
            self._owners.pop(item.seq)
            self.metrics.numerical_errors.inc()
            log.error("an answer ended: %s", item.error)
            ask.on_error("numerical_error", item.error)
            return
        if item.score is not None:  # a window scored: it leaves the batch with its score
            self._owners.pop(item.seq)
            ask.on_scored(item.score)  # type: ignore[union-attr]
            return
        try:
            if "prefill_s" not in ask.timings:  # the prefill's own token
                ask.on_prefilled()
            if item.token is not None:
                ask.on_token(item.token)
            if item.finished:
                self._owners.pop(item.seq)
                ask.on_finish(length_reached=item.token is not None)
        except Exception as exc:
            self._drop(item.seq)
            self._fail(ask, exc)

    def _drop(self, seq: Sequence) -> Ask | WindowScore | None:
        self.batch.release(seq)
        return self._owners.pop(seq, None)

    def _fail(self, ask: Ask | WindowScore, exc: Exception) -> None:
        log.error("answering failed", exc_info=exc)
        ask.on_error("generation_failed", f"generation failed ({type(exc).__name__})")
