"""Decoding ahead: order kept, errors raised where the frames are used, the producer bounded
and stopped when the consumer leaves."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from models.vision.encode import BATCH_BYTES, FRAMES_PER_BATCH, WINDOW, frames_per_batch
from models.vision.frames import Frame
from server.ingest.read_ahead import read_ahead


def frames(n: int, produced: list[int], fail_at: int | None = None) -> Iterator[Frame]:
    for i in range(n):
        if i == fail_at:
            raise RuntimeError("decoder broke")
        produced.append(i)
        yield Frame(index=i, pts_s=float(i), rgb=np.zeros((10, 10, 3), np.uint8))


def test_order_and_bound() -> None:
    produced: list[int] = []
    out = read_ahead(frames(50, produced), max_bytes=3 * 300)  # three frames may wait
    assert next(out).index == 0
    time.sleep(0.3)
    assert len(produced) <= 1 + 3 + 1  # the first, three waiting, one in the producer's hand
    assert [f.index for f in out] == list(range(1, 50))


def test_errors_reach_the_consumer_in_order() -> None:
    produced: list[int] = []
    seen = []
    with pytest.raises(RuntimeError, match="decoder broke"):
        for frame in read_ahead(frames(20, produced, fail_at=7), max_bytes=10_000):
            seen.append(frame.index)
    assert seen == list(range(7))


def test_a_consumer_that_leaves_stops_the_producer() -> None:
    produced: list[int] = []
    out = read_ahead(frames(10_000, produced), max_bytes=600)
    next(out)
    out.close()
    count = len(produced)
    time.sleep(0.2)
    assert len(produced) == count < 100
    assert not any(t.name == "longvu-read-ahead" for t in threading.enumerate())


def test_batches_are_whole_windows_within_the_byte_budget() -> None:
    assert frames_per_batch(64 * 48 * 3) == FRAMES_PER_BATCH  # small pictures: the most frames a batch takes
    assert frames_per_batch(1280 * 720 * 3) == 12 * WINDOW  # 512 MiB holds 194 frames of 720p
    assert frames_per_batch(3840 * 2160 * 3) == WINDOW  # 4K: one window
    assert frames_per_batch(7680 * 4320 * 3) == WINDOW  # never less than a window
    assert frames_per_batch(1920 * 1080 * 3, budget=BATCH_BYTES) % WINDOW == 0
