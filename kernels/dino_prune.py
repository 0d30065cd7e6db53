"""Window similarity pruning of frames (SPEC section 1, step 4).

Within each window of `window` consecutive frames, a frame's score is the mean cosine
similarity of its flattened, L2-normalised feature map to every frame of the window,
itself included. The window's middle frame (index len // 2) scores 0 and so always
survives; a frame is kept when its score is below `threshold`.

An all-zero frame has no direction: we treat its normalised vector as zero (the
reference divides by the zero norm and spreads NaN over the window). It is then
orthogonal to every frame, scores 0 and is kept, and the scores of the other frames
of its window stay finite and deterministic.

The Triton version reads every feature once: one program per (window, slice of the
flattened frame) computes that slice's part of the window's Gram matrix; a second,
tiny kernel sums the parts in a fixed order (deterministic, no atomics) and turns the
Gram matrix into norms, cosines, scores and the keep mask. The frame count is not
specialised (`kernels.specialization`): any video runs the variant the warm-up compiled.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.dispatch import Backend, interpreting, use_triton

WINDOW = 16
BLOCK_D = 1024


def window_prune_reference(
    features: torch.Tensor, threshold: float, window: int = WINDOW
) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, L, C] features -> (keep [N] bool, scores [N] float32)."""
    n = features.shape[0]
    flat = features.reshape(n, -1).float()
    norms = flat.norm(dim=1, keepdim=True)
    unit = torch.where(norms > 0, flat / norms.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
    scores = torch.empty(n, dtype=torch.float32, device=features.device)
    for start in range(0, n, window):
        block = unit[start : start + window]
        block_scores = (block @ block.T).mean(dim=1)
        block_scores[len(block) // 2] = 0.0
        scores[start : start + len(block)] = block_scores
    return scores < threshold, scores


@triton.jit(do_not_specialize=["n_frames"])
def _gram_part_kernel(x_ptr, part_ptr, n_frames, dim, n_parts,
                      WINDOW: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_D: tl.constexpr, HALF_DOT: tl.constexpr):
    win = tl.program_id(0)
    part = tl.program_id(1)
    local = tl.arange(0, BLOCK_W)
    rows = win * WINDOW + local
    cols = part * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = ((local < WINDOW) & (rows < n_frames))[:, None] & (cols < dim)[None, :]
    x = tl.load(x_ptr + rows.to(tl.int64)[:, None] * dim + cols[None, :], mask=mask, other=0.0)
    if HALF_DOT:
        # fp16/bf16 products are exact in fp32, which the tensor cores accumulate in.
        gram = tl.dot(x, tl.trans(x), out_dtype=tl.float32)
    else:
        x = x.to(tl.float32)
        gram = tl.dot(x, tl.trans(x), input_precision="ieee")
    tile = local[:, None] * BLOCK_W + local[None, :]
    tl.store(part_ptr + (win * n_parts + part).to(tl.int64) * BLOCK_W * BLOCK_W + tile, gram)


@triton.jit(do_not_specialize=["n_frames"])
def _window_scores_kernel(part_ptr, score_ptr, keep_ptr, n_frames, n_parts, threshold,
                          WINDOW: tl.constexpr, BLOCK_W: tl.constexpr):
    win = tl.program_id(0)
    local = tl.arange(0, BLOCK_W)
    tile = local[:, None] * BLOCK_W + local[None, :]
    gram = tl.zeros((BLOCK_W, BLOCK_W), dtype=tl.float32)
    base = part_ptr + win.to(tl.int64) * n_parts * BLOCK_W * BLOCK_W
    for part in range(0, n_parts):
        gram += tl.load(base + part * BLOCK_W * BLOCK_W + tile)
    eye = local[:, None] == local[None, :]
    norm_row = tl.sqrt(tl.sum(tl.where(eye, gram, 0.0), axis=1))
    norm_col = tl.sqrt(tl.sum(tl.where(eye, gram, 0.0), axis=0))
    denom = norm_row[:, None] * norm_col[None, :]
    cosine = tl.where(denom > 0, gram / tl.where(denom > 0, denom, 1.0), 0.0)
    start = win * WINDOW
    length = tl.minimum(n_frames - start, WINDOW)
    valid = local < length
    score = tl.sum(tl.where(valid[None, :], cosine, 0.0), axis=1) / length
    score = tl.where(local == length // 2, 0.0, score)
    tl.store(score_ptr + start + local, score, mask=valid)
    tl.store(keep_ptr + start + local, (score < threshold).to(tl.int8), mask=valid)


def window_prune_triton(
    features: torch.Tensor, threshold: float, window: int = WINDOW
) -> tuple[torch.Tensor, torch.Tensor]:
    n = features.shape[0]
    flat = features.reshape(n, -1).contiguous()
    dim = flat.shape[1]
    n_windows = triton.cdiv(n, window)
    block_w = max(16, triton.next_power_of_2(window))
    block_d = min(BLOCK_D, max(16, triton.next_power_of_2(dim)))
    n_parts = triton.cdiv(dim, block_d)
    parts = torch.empty(n_windows * n_parts * block_w * block_w, dtype=torch.float32, device=flat.device)
    scores = torch.empty(n, dtype=torch.float32, device=flat.device)
    keep = torch.empty(n, dtype=torch.int8, device=flat.device)
    # The interpreter cannot compute in bf16: there, everything is computed in fp32.
    half_dot = flat.dtype in (torch.float16, torch.bfloat16) and not interpreting()
    _gram_part_kernel[(n_windows, n_parts)](flat, parts, n, dim, n_parts,
                                            WINDOW=window, BLOCK_W=block_w, BLOCK_D=block_d, HALF_DOT=half_dot)
    _window_scores_kernel[(n_windows,)](parts, scores, keep, n, n_parts, float(threshold),
                                        WINDOW=window, BLOCK_W=block_w)
    return keep.bool(), scores


def window_prune(
    features: torch.Tensor, threshold: float, window: int = WINDOW, backend: Backend = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    if use_triton(features, backend):
        return window_prune_triton(features, threshold, window)
    return window_prune_reference(features, threshold, window)
