"""One question's life from the route to its last event.

The route creates an `Ask` and reads its events; the engine's worker thread calls the
`on_*` methods. Events go to the route's event loop as ("token", {...}), then exactly one
("done", Answer) or ("error", {...}), whoever ends the ask (its answer complete, its client
gone, a refusal, a failure, the server shutting down), so no reader waits for ever.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from transformers import PreTrainedTokenizerBase

from models.build import BuiltInputs, compression_summary
from models.language.generate import Detokenizer
from models.language.prompt import Conversation
from models.language.sampling import SamplingParams
from models.vision.encoded import EncodedVideo
from server.metrics import Metrics
from server.schemas import Answer, Compression, Timings, Usage

if TYPE_CHECKING:
    from server.decoding import Decoding


@dataclass(eq=False)
class Ask:
    encoded: EncodedVideo
    question: str | Conversation
    params: SamplingParams
    metrics: Metrics
    loop: asyncio.AbstractEventLoop
    received_at: float
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued_at: float = field(default_factory=time.perf_counter)
    admitted_at: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    built: BuiltInputs | None = None
    detok: Detokenizer | None = None
    answer: list[str] = field(default_factory=list)
    generated: int = 0
    last_token_at: float = 0.0
    closed: bool = False
    abort: Callable[[], object] | None = None  # set by a decoding whose answers run elsewhere
    on_end: Callable[[], None] | None = None  # called once with the terminal event (a tenant's count)


    def __post_init__(self) -> None:
        self.metrics.asks_open.inc()

    def cancel(self) -> None:
        """From any thread: the client is gone; the engine drops the ask at its next round
        (a remote answer stops at once)."""
        self.cancelled.set()
        if self.abort is not None:
            self.abort()

    def _emit(self, kind: str, payload: object) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))

    def _end(self, kind: str, payload: object) -> None:
        """The one terminal event; any later end is ignored."""
        if self.closed:
            return
        self.closed = True
        self.metrics.asks_open.dec()
        if self.on_end is not None:
            self.on_end()
        self._emit(kind, payload)

    # The worker thread's side.
    def on_admitted(self) -> None:
        self.admitted_at = time.perf_counter()
        self.timings["queue_wait_s"] = self.admitted_at - self.enqueued_at
        self.metrics.queue_wait.observe(self.timings["queue_wait_s"])

    def begin(self, decoding: Decoding, built: BuiltInputs, tokenizer: PreTrainedTokenizerBase) -> None:
        """Its inputs are built: the decoding answers it."""
        self.built, self.detok = built, Detokenizer(tokenizer)
        decoding.start(self, built)

    def on_prefilled(self) -> None:
        self.timings["prefill_s"] = time.perf_counter() - self.admitted_at
        self.metrics.prefill.observe(self.timings["prefill_s"])

    def on_token(self, token: int) -> None:
        now = time.perf_counter()
        if self.generated == 0:
            self.timings["ttft_s"] = now - self.received_at
            self.metrics.ttft.observe(self.timings["ttft_s"])
        else:
            self.metrics.inter_token.observe(now - self.last_token_at)
        self.generated += 1
        self.last_token_at = now
        self.metrics.generated_tokens.inc()
        assert self.detok is not None
        text = self.detok.push(token)
        if text:
            self.answer.append(text)
            self._emit("token", {"text": text})

    def on_finish(self, length_reached: bool) -> None:
        assert self.detok is not None and self.built is not None
        tail = self.detok.flush()
        if tail:
            self.answer.append(tail)
            self._emit("token", {"text": tail})
        built = self.built
        self.metrics.visual_tokens_before.inc(built.visual_tokens_before)
        self.metrics.visual_tokens_after.inc(built.visual_tokens_after)
        self.timings["total_s"] = time.perf_counter() - self.received_at
        self.metrics.ask_latency.observe(self.timings["total_s"])
        self._end("done", Answer(
            answer="".join(self.answer),
            finish_reason="length" if length_reached else "stop",
            usage=Usage(prompt_tokens=built.prompt_tokens, text_tokens=int(built.input_ids.numel()) - 1,
                        visual_tokens=built.visual_tokens_after, completion_tokens=self.generated),
            timings=Timings(**{k: round(v, 6) for k, v in self.timings.items()}),
            compression=Compression(**compression_summary(self.encoded, built)),
        ))

    def on_cancelled(self) -> None:
        self.metrics.cancelled.inc()
        self._end("error", {"code": "cancelled", "message": "the client went away"})

    def on_error(self, code: str, message: str) -> None:
        self._end("error", {"code": code, "message": message})
