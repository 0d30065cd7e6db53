"""Per-frame preprocessing for the two towers (SPEC section 1, step 2), batched in torch.

Each tower pads the frame to a square with its own processor's mean colour, as the
reference's `expand2square(img, tuple(int(x * 255) for x in processor.image_mean))`.
Resizing is bicubic with antialiasing, rounded to 8-bit values like the PIL resize
in the Hugging Face processors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TowerPreprocess:
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def pad_colour(self) -> tuple[int, int, int]:
        return tuple(int(m * 255) for m in self.mean)  # type: ignore[return-value]

    def __call__(self, frames: list[np.ndarray]) -> torch.Tensor:
        """[H, W, 3] uint8 frames of one video -> [B, 3, size, size] float32."""
        batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
        square = pad_to_square(batch, self.pad_colour).float()
        resized = F.interpolate(
            square, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=True
        )
        pixels = resized.round().clamp(0, 255) / 255.0
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (pixels - mean) / std


def pad_to_square(batch: torch.Tensor, colour: tuple[int, int, int]) -> torch.Tensor:
    """Centre [B, 3, H, W] uint8 images on a square canvas of `colour`."""
    b, c, h, w = batch.shape
    if h == w:
        return batch
    side = max(h, w)
    canvas = torch.tensor(colour, dtype=batch.dtype).view(1, c, 1, 1).repeat(b, 1, side, side)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[:, :, top : top + h, left : left + w] = batch
    return canvas


SIGLIP = TowerPreprocess(size=384, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
# DINOv2: shortest edge to 378 then a 378 centre crop, which on a square is one resize.
DINO = TowerPreprocess(size=378, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
