"""Decoding ahead of the towers: a thread of its own pulls frames from the decoder while the
device works on the batch before, up to a byte budget of frames waiting. So the device waits
on the CPU only when decoding truly cannot keep up, and memory stays bounded whatever the
resolution."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from models.encode import frames_per_batch
from models.frames import Frame

_DONE = object()


def read_ahead(frames: Iterator[Frame], max_bytes: int) -> Iterator[Frame]:
    """Frames decoded ahead: at most one batch of the towers (`frames_per_batch`), and at
    most `max_bytes` of them."""
    first = next(frames, None)
    if first is None:
        return
    ahead = min(frames_per_batch(first.rgb.nbytes), max_bytes // max(1, first.rgb.nbytes))
    waiting: queue.Queue = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()

    def put(item: object) -> bool:
        """Wait for room, unless the consumer has gone; False then."""
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for frame in frames:
                if not put(frame):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=produce, name="longvu-read-ahead", daemon=True)
    thread.start()
    try:
        yield first
        while True:
            item = waiting.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(30)
        close = getattr(frames, "close", None)
        if close is not None and not thread.is_alive():
            close()
