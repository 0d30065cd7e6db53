"""Spatial token compression (SPEC section 1, step 8).

Frames are taken in chunks of `chunk` consecutive frames. The chunk's first frame (the
anchor) keeps every token; every other frame keeps a token only when its cosine
similarity to the anchor's token at the same position is below `threshold`. Tokens
that are all zeros have similarity 0 to everything.
"""

from __future__ import annotations

import torch

CHUNK = 8
EPS = 1e-8  # as torch.nn.functional.cosine_similarity


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


def stc(tokens: torch.Tensor, threshold: float, chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    return stc_reference(tokens, threshold, chunk)
