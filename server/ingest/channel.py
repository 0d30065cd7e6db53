"""A bounded hand-off from a producer thread to one consumer that may leave early."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

_DONE = object()  # the producer's last item


class Channel:
    def __init__(self, maxsize: int) -> None:
        self.items: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self.closed = threading.Event()

    def _put(self, item: Any) -> bool:
        """Wait for room, unless the consumer has gone; False then."""
        while not self.closed.is_set():
            try:
                self.items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fill(self, items: Iterable[Any]) -> None:
        """The producer's side: every item, then the end; an exception goes to the consumer."""
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - raised again on the consumer's side
            self._put(exc)

    def drain(self) -> Iterator[Any]:
        """The consumer's side, until the end; leaving early closes the channel."""
        try:
            while (item := self.items.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self.closed.set()
