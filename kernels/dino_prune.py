"""Window similarity pruning of frames (SPEC section 1, step 4).

Within each window of `window` consecutive frames, a frame's score is the mean cosine
similarity of its flattened, L2-normalised feature map to every frame of the window,
itself included. The window's middle frame (index len // 2) scores 0 and so always
survives; a frame is kept when its score is below `threshold`.

An all-zero frame has no direction: we treat its normalised vector as zero (the
reference divides by the zero norm and spreads NaN over the window). It is then
orthogonal to every frame, scores 0 and is kept, and the scores of the other frames
of its window stay finite and deterministic.
"""

from __future__ import annotations

import torch

WINDOW = 16


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


def window_prune(
    features: torch.Tensor, threshold: float, window: int = WINDOW
) -> tuple[torch.Tensor, torch.Tensor]:
    return window_prune_reference(features, threshold, window)
