"""How the model worker splits the device between ingest and answers: while questions are
being answered and ingest work waits, ingest may take at most `share` of the worker's
recent time (after a tower step, the next waits until answers have had their part); with
no question answering, ingest takes all of it. Only time when both want the device counts,
so an answer that ran alone earns ingest no burst later."""

from __future__ import annotations

import time
from collections.abc import Callable

HALF_LIFE_S = 2.0  # what happened longer ago than a few seconds no longer counts


class DeviceShare:
    def __init__(self, share: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.share, self.clock = share, clock
        self.ingest_s = self.answers_s = 0.0
        self._at = clock()

    def _decay(self) -> None:
        now = self.clock()
        factor = 0.5 ** ((now - self._at) / HALF_LIFE_S)
        self.ingest_s, self.answers_s, self._at = self.ingest_s * factor, self.answers_s * factor, now

    def spent(self, ingest_s: float, answers_s: float) -> None:
        self._decay()
        self.ingest_s += ingest_s
        self.answers_s += answers_s

    @property
    def ingest_fraction(self) -> float:
        total = self.ingest_s + self.answers_s
        return self.ingest_s / total if total > 0 else 0.0

    def ingest_due(self, answering: bool) -> bool:
        """Whether a piece of ingest work may run now."""
        return not answering or self.ingest_s <= self.share * (self.ingest_s + self.answers_s)
