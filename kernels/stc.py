"""Spatial token compression (SPEC section 1, step 8).

Frames are taken in chunks of `chunk` consecutive frames. The chunk's first frame (the
anchor) keeps every token; every other frame keeps a token only when its cosine
similarity to the anchor's token at the same position is below `threshold`. Tokens
that are all zeros have similarity 0 to everything.

The Triton version has one program per (chunk, block of token positions): it streams
the chunk's frames through once, slice by slice of the hidden size, accumulating dot
products and norms against the anchor, and writes the keep mask. The kept tokens are
then copied to their place (an exclusive prefix sum of the mask, on the device) by a
second kernel; the only value read back by the host is their count, to size the output.
Frame, token and row counts are not specialised (`kernels.specialization`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.dispatch import Backend, use_triton

CHUNK = 8
EPS = 1e-8  # as torch.nn.functional.cosine_similarity
BLOCK_T = 16
BLOCK_D = 128
BLOCK_ROWS = 16


def stc_reference(
    tokens: torch.Tensor, threshold: float, chunk: int = CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """[F, T, D] tokens -> (keep [F, T] bool, kept tokens [K, D] in frame-major order)."""
    f = tokens.shape[0]
    x = tokens.float()
    anchors = x[torch.arange(f, device=x.device) // chunk * chunk]
    dots = (x * anchors).sum(-1)
    norms = x.norm(dim=-1) * anchors.norm(dim=-1)
    sim = dots / norms.clamp_min(EPS)
    keep = sim < threshold
    keep[::chunk] = True
    return keep, tokens[keep]


@triton.jit(do_not_specialize=["n_frames", "n_tokens"])
def _stc_keep_kernel(x_ptr, keep_ptr, n_frames, n_tokens, dim, threshold,
                     CHUNK: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
                     BLOCK_D: tl.constexpr, EPS: tl.constexpr):
    chunk = tl.program_id(0)
    t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    member = tl.arange(0, BLOCK_C)
    frames = chunk * CHUNK + member
    t_ok = t < n_tokens
    f_ok = (member < CHUNK) & (frames < n_frames)
    anchor_rows = (chunk * CHUNK).to(tl.int64) * n_tokens + t
    rows = frames.to(tl.int64)[:, None] * n_tokens + t[None, :]
    dot = tl.zeros((BLOCK_C, BLOCK_T), dtype=tl.float32)
    sq = tl.zeros((BLOCK_C, BLOCK_T), dtype=tl.float32)
    sq_anchor = tl.zeros((BLOCK_T,), dtype=tl.float32)
    for d0 in range(0, dim, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        d_ok = d < dim
        a = tl.load(x_ptr + anchor_rows[:, None] * dim + d[None, :], mask=t_ok[:, None] & d_ok[None, :],
                    other=0.0).to(tl.float32)
        mask = (f_ok[:, None] & t_ok[None, :])[:, :, None] & d_ok[None, None, :]
        x = tl.load(x_ptr + rows[:, :, None] * dim + d[None, None, :], mask=mask, other=0.0).to(tl.float32)
        dot += tl.sum(x * a[None, :, :], axis=2)
        sq += tl.sum(x * x, axis=2)
        sq_anchor += tl.sum(a * a, axis=1)
    denom = tl.maximum(tl.sqrt(sq) * tl.sqrt(sq_anchor)[None, :], EPS)
    keep = (dot / denom < threshold) | (member == 0)[:, None]
    tl.store(keep_ptr + rows, keep.to(tl.int8), mask=f_ok[:, None] & t_ok[None, :])


@triton.jit(do_not_specialize=["n_rows"])
def _compact_kernel(x_ptr, keep_ptr, dest_ptr, out_ptr, n_rows, dim, BLOCK_ROWS: tl.constexpr,
                    BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    r_ok = rows < n_rows
    kept = tl.load(keep_ptr + rows, mask=r_ok, other=0) != 0
    dest = tl.load(dest_ptr + rows, mask=r_ok, other=0)
    for d0 in range(0, dim, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        mask = (r_ok & kept)[:, None] & (d < dim)[None, :]
        values = tl.load(x_ptr + rows.to(tl.int64)[:, None] * dim + d[None, :], mask=mask)
        tl.store(out_ptr + dest[:, None] * dim + d[None, :], values, mask=mask)


def stc_triton(tokens: torch.Tensor, threshold: float, chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    f, t, d = tokens.shape
    x = tokens.contiguous()
    keep = torch.empty(f, t, dtype=torch.int8, device=x.device)
    block_c = max(2, triton.next_power_of_2(chunk))
    block_d = min(BLOCK_D, max(16, triton.next_power_of_2(d)))
    grid = (triton.cdiv(f, chunk), triton.cdiv(t, BLOCK_T))
    _stc_keep_kernel[grid](x, keep, f, t, d, float(threshold), CHUNK=chunk, BLOCK_C=block_c, BLOCK_T=BLOCK_T,
                           BLOCK_D=block_d, EPS=EPS)
    flat_keep = keep.view(-1)
    inclusive = torch.cumsum(flat_keep, 0)
    dest = inclusive - flat_keep
    out = torch.empty(int(inclusive[-1]) if inclusive.numel() else 0, d, dtype=x.dtype, device=x.device)
    _compact_kernel[(triton.cdiv(f * t, BLOCK_ROWS),)](x, flat_keep, dest, out, f * t, d,
                                                       BLOCK_ROWS=BLOCK_ROWS, BLOCK_D=block_d)
    return keep.bool(), out


def stc(
    tokens: torch.Tensor, threshold: float, chunk: int = CHUNK, backend: Backend = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    if use_triton(tokens, backend):
        return stc_triton(tokens, threshold, chunk)
    return stc_reference(tokens, threshold, chunk)
