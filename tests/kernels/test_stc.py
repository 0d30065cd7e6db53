"""The STC Triton kernels against their PyTorch reference."""

import pytest
import torch

from kernels.stc import stc_reference, stc_triton
from tests.kernels.cases import DEVICES, DTYPES, correlated


def _compare(x: torch.Tensor, threshold: float = 0.7, chunk: int = 8) -> torch.Tensor:
    keep, kept = stc_triton(x, threshold, chunk)
    ref_keep, ref_kept = stc_reference(x, threshold, chunk)
    assert torch.equal(keep.cpu(), ref_keep.cpu())
    assert kept.dtype == x.dtype
    assert torch.equal(kept.cpu(), ref_kept.cpu())  # a copy: bit for bit
    return keep


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("frames", "tokens", "dim"), [(19, 13, 37), (8, 7, 129), (9, 5, 16), (1, 3, 5), (3, 1, 200)])
def test_matches_reference(device: str, dtype: torch.dtype, frames: int, tokens: int, dim: int) -> None:
    _compare(correlated(frames, tokens, dim, seed=frames * 100 + tokens + dim, dtype=dtype, device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_identical_frames_leave_the_anchors(device: str) -> None:
    x = torch.randn(1, 6, 20).repeat(17, 1, 1).to(device)
    keep = _compare(x)
    assert keep.any(dim=1).nonzero().flatten().tolist() == [0, 8, 16]


@pytest.mark.parametrize("device", DEVICES)
def test_chunk_of_one_frame_keeps_everything(device: str) -> None:
    x = correlated(5, 4, 6, seed=3, dtype=torch.float32, device=device)
    assert _compare(x, chunk=1).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_tokens(device: str, dtype: torch.dtype) -> None:
    x = correlated(10, 4, 8, seed=4, dtype=dtype, device=device)
    x[0, 1] = 0  # an anchor token of zeros: nothing is similar to it
    x[3, 2] = 0
    keep = _compare(x)
    assert keep[1:8, 1].all() and keep[3, 2]
