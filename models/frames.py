"""One-frame-per-second sampling (SPEC section 1, step 1) with PyAV.

A sampled frame is the first decoded frame at or after each whole second of
presentation time. Only sampled frames are converted to RGB; the rest are decoded
and dropped. When a stream has a gap longer than a second, the seconds inside the
gap take no frame (a frame is never sampled twice).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

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


def sample_frames(path: str | Path) -> Iterator[Frame]:
    """Decode `path` sequentially and yield one frame per second of video."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = stream.time_base or Fraction(1, 1)
        yield from select_each_second(container.decode(stream), time_base)


def select_each_second(frames: Iterator[av.VideoFrame], time_base: Fraction) -> Iterator[Frame]:
    next_second = 0
    index = 0
    for frame in frames:
        t = frame_time(frame, time_base)
        if t is not None and t >= next_second:
            yield Frame(index=index, pts_s=float(t), rgb=frame.to_ndarray(format="rgb24"))
            index += 1
            next_second = math.floor(t) + 1
