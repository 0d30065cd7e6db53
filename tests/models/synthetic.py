"""Encoded videos with made-up features, for the per-question stage."""

import torch

from models.model import LongVU
from models.vision.encoded import EncodedVideo


def synthetic_encoded(
    model: LongVU, frames: int, width: int = 64, height: int = 64, pruned: bool = True,
    features: torch.Tensor | None = None, keep: torch.Tensor | None = None,
) -> EncodedVideo:
    cfg = model.config
    if features is None:
        gen = torch.Generator().manual_seed(frames)
        features = torch.randn(frames, cfg.query_num_list[0], cfg.vision_hidden_size, generator=gen)
    return EncodedVideo(
        features=features,
        frame_indices=torch.arange(frames),
        timestamps=torch.arange(frames, dtype=torch.float64),
        dino_keep=torch.ones(frames, dtype=torch.bool) if keep is None else keep,
        pruned=pruned,
        frames_sampled=frames,
        frames_survived=frames,
        width=width,
        height=height,
        duration_s=float(frames),
        size_quirk=True,
    )
