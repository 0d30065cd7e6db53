"""The window-pruning Triton kernel against its PyTorch reference."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels.dino_prune import window_prune_reference, window_prune_triton
from tests.kernels.cases import DEVICES, DTYPES, correlated

ROOT = Path(__file__).resolve().parents[2]


def _compare(x: torch.Tensor, threshold: float = 0.83, window: int = 16) -> torch.Tensor:
    keep, scores = window_prune_triton(x, threshold, window)
    ref_keep, ref_scores = window_prune_reference(x, threshold, window)
    assert torch.equal(keep.cpu(), ref_keep.cpu())
    assert torch.allclose(scores.cpu(), ref_scores.cpu(), atol=1e-5, rtol=1e-5)
    assert torch.isfinite(scores).all()
    return keep


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "tokens", "channels"), [(37, 5, 7), (16, 3, 9), (9, 7, 13), (1, 4, 5), (50, 2, 600)])
def test_matches_reference(device: str, dtype: torch.dtype, n: int, tokens: int, channels: int) -> None:
    seed = n * 1000 + tokens * 10 + channels
    _compare(correlated(n, tokens, channels, seed=seed, dtype=dtype, device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_identical_frames_leave_the_middles(device: str) -> None:
    x = torch.randn(1, 6, 10).repeat(21, 1, 1).to(device)
    keep = _compare(x)
    assert keep.nonzero().flatten().tolist() == [8, 18]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_frames_are_finite_and_kept(device: str, dtype: torch.dtype) -> None:
    x = correlated(20, 4, 6, seed=5, dtype=dtype, device=device)
    x[[0, 3, 17]] = 0
    keep = _compare(x)
    assert keep[[0, 3, 17]].all()


@pytest.mark.parametrize("device", DEVICES)
def test_other_window_sizes(device: str) -> None:
    x = correlated(29, 3, 5, seed=9, dtype=torch.float32, device=device)
    _compare(x, window=5)
    _compare(x, window=20)


DISPATCH = """
import torch
import kernels.dino_prune as module

calls = []
original = module.window_prune_triton
module.window_prune_triton = lambda *a: calls.append(1) or original(*a)
module.window_prune(torch.randn(4, 2, 3), 0.83)
assert calls == [1], calls
import os
os.environ["TRITON_INTERPRET"] = "0"
module.window_prune(torch.randn(4, 2, 3), 0.83)
assert calls == [1], calls  # CPU tensors without the interpreter take the reference
print("ok")
"""


def test_dispatch_runs_the_kernel_when_interpreting() -> None:
    """In a process of its own: the interpreter is chosen when the kernels are defined, so
    a process that compiled them (on a GPU) cannot interpret them later."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", DISPATCH], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
