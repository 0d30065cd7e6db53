"""How many frames one device step of an ingest takes through a tower.

A running answer's next token waits for at most one such step, so its size bounds the
stall. `FixedSteps` always takes the same number (tools, tests, the warm-up). `TimedSteps`
learns each tower's device time per frame at each picture size from the steps it ran (timed
once the device has finished them) and sizes the next step to about `target_s`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from kernels.dino_prune import WINDOW

TOWER_BATCH = 4 * WINDOW  # frames a step takes at the most
SMOOTHING = 0.3  # weight of the newest measurement
REMEMBERED_SIZES = 64  # picture sizes whose timings are kept (a server sees a handful)


class TowerSteps(Protocol):
    def frames(self, tower: str, size: tuple[int, int]) -> int:
        """Frames the next step of `tower` takes, for pictures of `size` (height, width)."""
        ...

    def measured(self, tower: str, size: tuple[int, int], frames: int, seconds: float) -> None:
        """A step of `tower` took `seconds` of device time for `frames` frames."""
        ...


@dataclass(frozen=True)
class FixedSteps:
    size: int = TOWER_BATCH

    def frames(self, tower: str, size: tuple[int, int]) -> int:
        return self.size

    def measured(self, tower: str, size: tuple[int, int], frames: int, seconds: float) -> None:
        pass


class TimedSteps:
    def __init__(self, target_s: float, most: int = TOWER_BATCH, first: int = WINDOW) -> None:
        self.target_s, self.most, self.first = target_s, most, first
        self._per_frame: dict[tuple[str, tuple[int, int]], float] = {}
        self._lock = threading.Lock()  # the ingest threads share one

    def frames(self, tower: str, size: tuple[int, int]) -> int:
        per_frame = self._per_frame.get((tower, size))
        if per_frame is None:  # not timed yet: a small step, to learn from
            return self.first
        return max(1, min(self.most, int(self.target_s / max(per_frame, 1e-9))))

    def measured(self, tower: str, size: tuple[int, int], frames: int, seconds: float) -> None:
        per_frame = seconds / max(1, frames)
        with self._lock:
            old = self._per_frame.get((tower, size))
            if old is None and len(self._per_frame) >= REMEMBERED_SIZES:
                self._per_frame.clear()
            self._per_frame[tower, size] = per_frame if old is None else old + SMOOTHING * (per_frame - old)
