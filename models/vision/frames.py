"""One-frame-per-second sampling (SPEC section 1, step 1) with PyAV, by the rule of
`models.arithmetic.FrameSampler` that `LONGVU_SAMPLING` picks: `exact` (default), or
`reference` for reproducing published scores (on a 29.97 fps video it drifts by 0.1%,
3.6 s an hour, from the clock). Only sampled frames are converted to RGB.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from models.arithmetic import FrameSampler, SamplingMode


@dataclass(frozen=True)
class Frame:
    index: int  # position among the sampled frames
    pts_s: float  # presentation time in the source, seconds
    rgb: np.ndarray  # [H, W, 3] uint8


def frame_time(frame: av.VideoFrame, time_base: Fraction) -> Fraction | None:
    if frame.pts is None:
        return None
    return frame.pts * time_base


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
