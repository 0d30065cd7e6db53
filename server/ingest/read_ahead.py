"""Decoding ahead of the towers: a thread of its own pulls frames from the decoder while the
device works on the batch before, up to a byte budget of frames waiting. So the device waits
on the CPU only when decoding truly cannot keep up, and memory stays bounded whatever the
resolution."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from models.vision.encode import frames_per_batch
from models.vision.frames import Frame
from server.ingest.channel import Channel


def read_ahead(frames: Iterator[Frame], max_bytes: int) -> Iterator[Frame]:
    """Frames decoded ahead: at most one batch of the towers (`frames_per_batch`), and at
    most `max_bytes` of them."""
    first = next(frames, None)
    if first is None:
        return
    ahead = min(frames_per_batch(first.rgb.nbytes), max_bytes // max(1, first.rgb.nbytes))
    waiting = Channel(ahead)
    thread = threading.Thread(target=waiting.fill, args=(frames,), name="longvu-read-ahead", daemon=True)
    thread.start()
    try:
        yield first
        yield from waiting.drain()
    finally:
        waiting.close()
        thread.join(30)
        close = getattr(frames, "close", None)
        if close is not None and not thread.is_alive():
            close()
