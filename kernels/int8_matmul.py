"""Weight-only int8 matmul: activations [M, K] against int8 weights [N, K] with one scale
per output channel (row of the weight), `out = (x @ qweight.T) * scale`.

A decode step is bound by reading the weights, so the weights must cross memory as int8
once. Dequantising them to the activations' dtype first (what an eager int8 weight-only
linear does without a compiler fusing it) writes and reads them again at twice the size:
2.5x the bytes of a float16 linear. The Triton kernel loads int8 tiles, widens them in
registers and multiplies and accumulates in float32; it serves the few rows of a decode step. Many rows
(a prefill pass) are compute-bound: there the weight is dequantised once for a dense
matmul, and the copy is amortised over the rows.

On CPU tensors (without the interpreter) few float32 rows go to `torch._weight_int8pack_mm`,
which also never widens the whole weight (its scales take the activations' dtype, so other
dtypes run the reference, keeping the float32 scales).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.dispatch import Backend, use_triton

BLOCK_M = 16  # tl.dot's smallest tile: a decode step's rows fit in one (one variant for every row count)
BLOCK_K = 128
PROGRAMS = 256  # enough programs in flight to stream the weights: narrower column blocks for small layers
FEW_ROWS = 64  # at most this many rows read the int8 weight directly; more dequantise it once


def dequantize(qweight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (qweight.float() * scale.float()[:, None]).to(dtype)


def int8_matmul_reference(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [M, K] (any float dtype), qweight [N, K] int8, scale [N] -> [M, N] in x's dtype,
    computed in float32."""
    return ((x.float() @ qweight.float().T) * scale.float()).to(x.dtype)


@triton.jit(do_not_specialize=["m"])
def _int8_matmul_kernel(x_ptr, w_ptr, scale_ptr, out_ptr, m, n, k, stride_x, stride_out,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        PRECISION: tl.constexpr):
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    r_ok, c_ok = rows < m, cols < n
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, k, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < k
        x = tl.load(x_ptr + rows.to(tl.int64)[:, None] * stride_x + ks[None, :],
                    mask=r_ok[:, None] & k_ok[None, :], other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols.to(tl.int64)[None, :] * k + ks[:, None], mask=k_ok[:, None] & c_ok[None, :],
                    other=0).to(tl.float32)
        # In float32: TF32 holds float16, bfloat16 and int8 values exactly, so the tensor
        # cores give the reference's products; float32 activations need IEEE.
        acc += tl.dot(x, w, input_precision=PRECISION)
    scale = tl.load(scale_ptr + cols, mask=c_ok, other=0.0).to(tl.float32)
    out = acc * scale[None, :]
    tl.store(out_ptr + rows.to(tl.int64)[:, None] * stride_out + cols[None, :],
             out.to(out_ptr.dtype.element_ty), mask=r_ok[:, None] & c_ok[None, :])


def block_columns(n: int) -> int:
    """16 to 64 output channels a program: the layer's width alone decides (one variant a layer)."""
    return min(64, max(16, triton.next_power_of_2(triton.cdiv(n, PROGRAMS))))


def int8_matmul_triton(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    m, k = x.shape
    n = qweight.shape[0]
    x = x if x.stride(-1) == 1 else x.contiguous()
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    block_n = block_columns(n)
    grid = (triton.cdiv(n, block_n), triton.cdiv(m, BLOCK_M))
    precision = "ieee" if x.dtype == torch.float32 else "tf32"
    _int8_matmul_kernel[grid](x, qweight, scale, out, m, n, k, x.stride(0), out.stride(0), BLOCK_M=BLOCK_M,
                              BLOCK_N=block_n, BLOCK_K=BLOCK_K, PRECISION=precision)
    return out


def int8_matmul(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor,
                backend: Backend = "auto") -> torch.Tensor:
    """x [M, K] -> [M, N]; `scale` [N] in float32."""
    if x.shape[0] > FEW_ROWS:
        return x @ dequantize(qweight, scale, x.dtype).T
    if use_triton(x, backend):
        return int8_matmul_triton(x, qweight, scale)
    if x.dtype == torch.float32:
        return torch._weight_int8pack_mm(x, qweight, scale)
    return int8_matmul_reference(x, qweight, scale)
