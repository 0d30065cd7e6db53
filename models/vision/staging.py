"""Host blocks that frames are stacked into before they go up to the device, reused and bounded.

torch's `pin_memory()` takes page-locked blocks from its caching host allocator, rounded up
to a power of two and never given back to the system: a first 8K tower step page-locks
2 GB per concurrent ingest for the life of the process. Here a step takes a block from a
pool that holds at most `limit_bytes` in all; the block comes back once its upload has
finished (a CUDA event on the uploading stream), and the next step that fits reuses it.
When the pool is full, a step stacks into pageable memory instead (a slower upload), and
that is counted and logged, not silent.

Without CUDA nothing is page-locked, but the same pool runs (CI exercises it).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger("longvu.staging")

BLOCK_ALIGN = 1 << 20  # blocks are whole MiB, so steps of nearby sizes share them
DEFAULT_LIMIT = 1 << 30


@dataclass(eq=False)
class _Block:
    data: torch.Tensor  # flat uint8
    uploaded: torch.cuda.Event | None = None  # the upload that last read it


class Staged:
    """Frames stacked in a block: `tensor` is [B, H, W, 3] uint8; `done()` after the upload."""

    def __init__(self, tensor: torch.Tensor, pool: StagingPool | None, block: _Block | None) -> None:
        self.tensor, self._pool, self._block = tensor, pool, block

    def __del__(self) -> None:  # a step that never ran (its job was cancelled) uploaded nothing
        self.done()

    def done(self) -> None:
        """The upload has been queued on the current stream: the block may be reused once
        the device has read it."""
        if self._pool is not None and self._block is not None:
            self._pool.give_back(self._block)
            self._pool = self._block = None


class StagingPool:
    def __init__(self, limit_bytes: int = DEFAULT_LIMIT, pin: bool | None = None) -> None:
        self.limit_bytes = limit_bytes
        self.pin = torch.cuda.is_available() if pin is None else pin
        self.held_bytes = 0  # in every block, free or in use
        self.pageable_steps = 0  # steps that found no room in the pool
        self._free: list[_Block] = []
        self._lock = threading.Lock()

    def stage(self, frames: list[np.ndarray]) -> Staged:
        """[H, W, 3] uint8 frames of one size, stacked in one block (on the calling thread)."""
        shape = (len(frames), *frames[0].shape)
        nbytes = int(np.prod(shape))
        block = self._take(nbytes)
        if block is None:
            return Staged(torch.from_numpy(np.stack(frames)), None, None)
        tensor = block.data[:nbytes].view(shape)
        np.stack(frames, out=tensor.numpy())
        return Staged(tensor, self, block)

    def give_back(self, block: _Block) -> None:
        if self.pin:
            block.uploaded = torch.cuda.Event()
            block.uploaded.record()
        with self._lock:
            self._free.append(block)

    def _take(self, nbytes: int) -> _Block | None:
        with self._lock:
            ready = [b for b in self._free if b.data.numel() >= nbytes and (b.uploaded is None or b.uploaded.query())]
            if ready:
                block = min(ready, key=lambda b: b.data.numel())  # the snuggest fit
                self._free.remove(block)
                return block
            size = -(-nbytes // BLOCK_ALIGN) * BLOCK_ALIGN
            # Room for a new block: drop free blocks that are too small, smallest first.
            for small in sorted((b for b in self._free if b.data.numel() < nbytes), key=lambda b: b.data.numel()):
                if self.held_bytes + size <= self.limit_bytes:
                    break
                if small.uploaded is None or small.uploaded.query():
                    self._free.remove(small)
                    self.held_bytes -= small.data.numel()
            if self.held_bytes + size > self.limit_bytes:
                self.pageable_steps += 1
                if self.pageable_steps == 1:
                    log.warning("staging frames in pageable memory: a %d MiB step does not fit the %d MiB of "
                                "page-locked blocks (%d MiB held); uploads are slower (counted in "
                                "longvu_staging_pageable_steps)", size >> 20, self.limit_bytes >> 20,
                                self.held_bytes >> 20)
                return None
            self.held_bytes += size
        return _Block(torch.empty(size, dtype=torch.uint8, pin_memory=self.pin))
