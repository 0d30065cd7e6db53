"""Per-frame preprocessing for the two towers (SPEC section 1, step 2), as the reference does it.

Each tower pads the frame to a square with its own processor's mean colour (the reference's
`expand2square(img, tuple(int(x * 255) for x in processor.image_mean))`), resizes it with
PIL's bicubic filter to the tower's size (the reference's `.resize((size, size))`; the
processors' own resize and crop are then no-ops), scales to [0, 1] in float64 and
normalises in float32 (transformers 4.42.4's `rescale` and `normalize`). The pixels are
the reference's, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


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
        resized = np.stack([self.resize(frame) for frame in frames])
        scaled = (resized.astype(np.float64) * (1 / 255)).astype(np.float32)
        pixels = (scaled - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()

    def resize(self, frame: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8 -> [size, size, 3] uint8: padded to a square, resized."""
        square = torch.from_numpy(frame).permute(2, 0, 1)[None]
        padded = pad_to_square(square, self.pad_colour)[0].permute(1, 2, 0).numpy()
        image = Image.fromarray(np.ascontiguousarray(padded), mode="RGB")
        return np.asarray(image.resize((self.size, self.size), Image.Resampling.BICUBIC))


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
