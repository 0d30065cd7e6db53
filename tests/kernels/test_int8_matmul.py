"""The weight-only int8 matmul kernel against its PyTorch reference."""

import pytest
import torch

from kernels.int8_matmul import FEW_ROWS, dequantize, int8_matmul, int8_matmul_reference, int8_matmul_triton
from tests.kernels.cases import DEVICES, DTYPES


def _operands(m: int, n: int, k: int, dtype: torch.dtype, device: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen).to(dtype=dtype, device=device)
    qweight = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8).to(device)
    scale = (torch.rand(n, generator=gen) * 0.02 + 1e-4).to(device)
    return x, qweight, scale


def _close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    assert out.dtype == ref.dtype == dtype
    tol = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    torch.testing.assert_close(out.float().cpu(), ref.float().cpu(), rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("m", "n", "k"), [(1, 64, 128), (3, 37, 200), (16, 130, 33), (17, 5, 257), (64, 96, 64),
                                           (3, 5000, 70), (2, 17000, 40)])  # 32 and 64 columns a program
def test_matches_reference(device: str, dtype: torch.dtype, m: int, n: int, k: int) -> None:
    x, qweight, scale = _operands(m, n, k, dtype, device, seed=m * 1000 + n + k)
    _close(int8_matmul_triton(x, qweight, scale), int8_matmul_reference(x, qweight, scale), dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_strided_rows(device: str) -> None:
    """Rows of a wider tensor (a slice of a fused projection) are read where they lie."""
    x, qweight, scale = _operands(5, 48, 70, torch.float32, device)
    wide = torch.cat([x, torch.ones_like(x)], dim=1)[:, :70]
    assert wide.stride(0) == 140
    _close(int8_matmul_triton(wide, qweight, scale), int8_matmul_reference(x, qweight, scale), torch.float32)


@pytest.mark.parametrize("m", [1, 7, FEW_ROWS + 3])
def test_every_path_agrees(m: int) -> None:
    """The dispatcher's CPU paths (the fused CPU op for few rows, a dense matmul over the
    dequantised weight for many) equal the reference."""
    x, qweight, scale = _operands(m, 40, 96, torch.float32, "cpu")
    ref = int8_matmul_reference(x, qweight, scale)
    _close(int8_matmul(x, qweight, scale, backend="torch"), ref, torch.float32)
    _close(int8_matmul(x, qweight, scale), ref, torch.float32)


def test_dequantize_scales_each_output_channel() -> None:
    qweight = torch.tensor([[127, -127], [1, 0]], dtype=torch.int8)
    scale = torch.tensor([0.5, 2.0])
    assert dequantize(qweight, scale, torch.float32).tolist() == [[63.5, -63.5], [2.0, 0.0]]
