"""One-frame-per-second sampling (SPEC section 1, step 1) with PyAV.

Two rules, chosen by `LONGVU_SAMPLING`:
- `exact` (default): the first frame at or after each whole second of presentation time.
  When a stream has a gap longer than a second, the seconds inside the gap take no frame
  (a frame is never sampled twice).
- `reference`: every round(fps)-th frame by index, fps the stream's average rate, as the
  reference code samples with decord; for reproducing published scores. On a 29.97 fps
  video it drifts by 0.1% (3.6 s an hour) from the clock.
Only sampled frames are converted to RGB; the rest are decoded and dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np


@dataclass(frozen=True)
class Frame:
    index: int  # position among the sampled frames
    pts_s: float  # presentation time in the source, seconds
    rgb: np.ndarray  # [H, W, 3] uint8


def frame_time(frame: av.VideoFrame, time_base: Fraction) -> Fraction | None:
    if frame.pts is None:
        return None
    return frame.pts * time_base


SamplingMode = Literal["exact", "reference"]


class FrameSampler:
    """Decides, frame by frame in presentation order, which frames are sampled."""

    def __init__(self, mode: SamplingMode, fps: float) -> None:
        self.mode, self.step = mode, max(1, round(fps))
        self.seen, self.next_second = 0, 0

    def take(self, t: Fraction | None) -> bool:
        index, self.seen = self.seen, self.seen + 1
        if self.mode == "reference":
            return index % self.step == 0
        if t is None or t < self.next_second:
            return False
        self.next_second = math.floor(t) + 1
        return True


def average_fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 1.0


def sample_frames(path: str | Path, mode: SamplingMode = "exact") -> Iterator[Frame]:
    """Decode `path` sequentially and yield its sampled frames."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = stream.time_base or Fraction(1, 1)
        sampler = FrameSampler(mode, average_fps(stream))
        index = 0
        for frame in container.decode(stream):
            t = frame_time(frame, time_base)
            if sampler.take(t):
                yield Frame(index=index, pts_s=float(t or 0), rgb=frame.to_ndarray(format="rgb24"))
                index += 1
