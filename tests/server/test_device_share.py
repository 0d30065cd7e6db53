"""The split of the model worker's time between ingest and answers (LONGVU_INGEST_SHARE)."""

from __future__ import annotations

import asyncio
import threading
import time

from models.language.sampling import SamplingParams
from server.asks import Ask
from server.decoding.local import LocalDecoding
from server.device_share import HALF_LIFE_S, DeviceShare
from server.engine import Engine
from server.metrics import Metrics
from tests.models.synthetic import synthetic_encoded


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ingest_waits_for_answers_to_have_their_part() -> None:
    clock = Clock()
    share = DeviceShare(0.3, clock)
    assert share.ingest_due(answering=True)  # nothing spent yet: one step may go
    share.spent(ingest_s=0.2, answers_s=0.0)  # a slow tower step
    assert not share.ingest_due(answering=True)
    assert share.ingest_due(answering=False)  # no answers: ingest takes the device
    for _ in range(46):  # decode rounds of 10 ms: 0.46 s, not yet 0.2 * 0.7 / 0.3
        share.spent(0.0, 0.01)
    assert not share.ingest_due(answering=True)
    share.spent(0.0, 0.01)
    assert share.ingest_due(answering=True)  # 0.2 of 0.67 s: 30 %


def test_old_time_fades() -> None:
    clock = Clock()
    share = DeviceShare(0.3, clock)
    share.spent(1.0, 1.0)
    clock.now = HALF_LIFE_S
    share.spent(0.0, 0.0)
    assert share.ingest_s == share.answers_s == 0.5


def test_a_running_answer_keeps_most_of_the_device_during_ingest(model) -> None:  # type: ignore[no-untyped-def]
    """Tower steps slowed by injection to 100 ms each, sent back to back by an ingest thread
    while an answer runs: ingest gets about its share of the time, no more, and all of it
    once the answer is done."""
    metrics = Metrics()
    decoding = LocalDecoding(model, metrics, max_running=2, max_new_tokens=1000, prefill_tokens=512, cuda_graphs=False)
    engine = Engine(model, metrics, decoding, max_queue=4, ingest_share=0.3)
    spans: list[tuple[float, float]] = []  # when each tower step ran
    stop = threading.Event()

    def step() -> None:
        began = time.perf_counter()
        time.sleep(0.1)
        spans.append((began, time.perf_counter()))

    def ingest() -> None:
        while not stop.is_set():
            engine.run_on_device(step)

    def busy(start: float, end: float) -> float:
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in spans) / (end - start)

    async def answer() -> tuple[float, float]:  # its first token and its last, as the worker saw them
        ask = Ask(synthetic_encoded(model, 4), "Go on.", SamplingParams(max_new_tokens=800, ignore_eos=True),
                  engine.metrics, asyncio.get_running_loop(), time.perf_counter())
        ask.timings["cache_load_s"] = 0.0
        engine.submit(ask)
        while (kind := (await ask.events.get())[0]) == "token":
            pass
        assert kind == "done"
        # As the worker saw it (this loop may read the events later): first token to last.
        return ask.received_at + ask.timings["ttft_s"], ask.received_at + ask.timings["total_s"]

    try:
        asyncio.run(answer())  # warm
        solo_start, solo_end = asyncio.run(answer())
        feeder = threading.Thread(target=ingest)
        feeder.start()
        time.sleep(0.3)
        started, ended = asyncio.run(answer())
        during = busy(started, ended)
        time.sleep(1.0)
        solo_from = time.perf_counter()
        time.sleep(1.0)
        solo = busy(solo_from, time.perf_counter())
    finally:
        stop.set()
        engine.stop()
    kept = (solo_end - solo_start) / (ended - started)
    print(f"ingest's share of the device: {during:.2f} while an answer runs ({ended - started:.1f} s), "
          f"{solo:.2f} alone; the answer kept {kept:.0%} of its solo token rate")
    assert during <= 0.4, during  # the share (0.3), and a step's worth of slack
    assert during >= 0.1, during  # not starved either
    assert solo >= 0.8, solo
