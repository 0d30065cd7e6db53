"""The staging pool: frames stacked into reused host blocks, bounded in bytes."""

from __future__ import annotations

import numpy as np
import torch

from models.vision.staging import BLOCK_ALIGN, StagingPool


def frames(n: int, height: int = 90, width: int = 160, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]


def test_a_block_holds_the_frames_and_is_reused() -> None:
    pool = StagingPool(limit_bytes=8 * BLOCK_ALIGN, pin=False)
    first = frames(4)
    staged = pool.stage(first)
    assert torch.equal(staged.tensor, torch.from_numpy(np.stack(first)))
    block = staged.tensor.untyped_storage().data_ptr()
    staged.done()
    again = pool.stage(frames(3, seed=1))  # smaller: the same block
    assert again.tensor.untyped_storage().data_ptr() == block and pool.held_bytes == BLOCK_ALIGN
    assert torch.equal(again.tensor, torch.from_numpy(np.stack(frames(3, seed=1))))


def test_the_pool_is_bounded_and_counts_what_does_not_fit() -> None:
    pool = StagingPool(limit_bytes=2 * BLOCK_ALIGN, pin=False)
    held = [pool.stage(frames(8)), pool.stage(frames(8))]  # 346 kB each: a MiB block each, in use
    overflow = pool.stage(frames(8, seed=2))
    assert pool.held_bytes == 2 * BLOCK_ALIGN and pool.pageable_steps == 1
    assert torch.equal(overflow.tensor, torch.from_numpy(np.stack(frames(8, seed=2))))  # pageable, still right
    for staged in held:
        staged.done()
    big = pool.stage(frames(30))  # 1.3 MB: two free 1 MiB blocks make way for a 2 MiB one
    assert big.tensor.numel() == 30 * 90 * 160 * 3 and pool.held_bytes == 2 * BLOCK_ALIGN
    assert pool.pageable_steps == 1


def test_a_step_that_never_ran_gives_its_block_back() -> None:
    pool = StagingPool(limit_bytes=BLOCK_ALIGN, pin=False)
    pool.stage(frames(2))  # dropped unused, as a cancelled job's step
    pool.stage(frames(2)).done()
    assert pool.pageable_steps == 0
