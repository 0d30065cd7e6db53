"""Hand-made cases for the PyTorch references (the CPU path and the kernels' oracle)."""

import torch

from kernels.dino_prune import window_prune_reference
from kernels.stc import stc_reference


def test_identical_frames_leave_only_the_middle_of_each_window() -> None:
    frames = torch.randn(1, 10, 6).repeat(37, 1, 1)  # windows of 16, 16 and 5
    keep, scores = window_prune_reference(frames, threshold=0.83)
    assert keep.nonzero().flatten().tolist() == [8, 24, 34]
    assert torch.allclose(scores[keep], torch.zeros(3))


def test_orthogonal_frames_all_survive() -> None:
    frames = torch.eye(20).view(20, 4, 5)
    keep, scores = window_prune_reference(frames, threshold=0.83)
    assert keep.all()
    assert torch.allclose(scores[0], torch.tensor(1 / 16))  # itself only, over 16 frames


def test_zero_frame_gives_no_nan() -> None:
    frames = torch.randn(5, 3, 4)
    frames[1] = 0
    keep, scores = window_prune_reference(frames, threshold=0.83)
    assert torch.isfinite(scores).all()
    assert scores[1] == 0 and keep[1]


def test_identical_frames_in_a_chunk_leave_only_the_anchor() -> None:
    tokens = torch.randn(1, 7, 5).repeat(19, 1, 1)  # chunks of 8, 8 and 3
    keep, kept = stc_reference(tokens, threshold=0.7)
    assert keep.any(dim=1).nonzero().flatten().tolist() == [0, 8, 16]
    assert keep[[0, 8, 16]].all()
    assert torch.equal(kept, tokens[[0, 8, 16]].flatten(0, 1))


def test_stc_keeps_dissimilar_tokens_in_order() -> None:
    tokens = torch.randn(3, 4, 2)
    tokens[1, 0] = tokens[0, 0] * 3  # same direction as the anchor: dropped
    tokens[1, 1] = -tokens[0, 1]  # opposite: kept
    keep, kept = stc_reference(tokens, threshold=0.7)
    assert not keep[1, 0] and keep[1, 1]
    assert torch.equal(kept, tokens[keep])
