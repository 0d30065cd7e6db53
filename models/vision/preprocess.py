"""Per-frame preprocessing for the two towers (SPEC section 1, step 2), as the reference does it.

Each tower pads the frame to a square with its own processor's mean colour (the reference's
`expand2square(img, tuple(int(x * 255) for x in processor.image_mean))`), resizes it with
PIL's bicubic filter to the tower's size (the reference's `.resize((size, size))`; the
processors' own resize and crop are then no-ops), scales to [0, 1] in float64 and
normalises in float32 (transformers 4.42.4's `rescale` and `normalize`).

Two implementations give the same bits: PIL itself on the CPU, and PIL's fixed-point
arithmetic rebuilt as two float64 matrix products (exact: every sum is an integer below
2**53) on the model's device, so that a GPU ingest uploads uint8 frames once and does the
rest there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

PRECISION_BITS = 22  # PIL's fixed point for 8-bit images: 32 - 8 - 2


@dataclass(frozen=True)
class TowerPreprocess:
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def pad_colour(self) -> tuple[int, int, int]:
        return tuple(int(m * 255) for m in self.mean)  # type: ignore[return-value]

    def __call__(self, frames: list[np.ndarray], device: torch.device | None = None) -> torch.Tensor:
        """[H, W, 3] uint8 frames of one video -> [B, 3, size, size] float32 on `device`
        (PIL on the CPU, the same arithmetic in torch elsewhere)."""
        if device is None or device.type == "cpu":
            resized = torch.from_numpy(np.stack([self.resize(frame) for frame in frames])).permute(0, 3, 1, 2)
            return self.normalise(resized)
        return self.on_device(torch.from_numpy(np.stack(frames)), device)

    def on_device(self, staged: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The device's part: upload, resize and normalise [B, H, W, 3] uint8 frames, stacked
        on the host (`models.vision.staging`, on the ingest's thread, not the device's)."""
        return self.normalise(self.resize_on(staged.to(device, non_blocking=True).permute(0, 3, 1, 2)))

    def normalise(self, resized: torch.Tensor) -> torch.Tensor:
        """[B, 3, size, size] uint8 -> float32: scaled in float64, normalised in float32."""
        scaled = (resized.double() * (1 / 255)).float()
        mean = torch.tensor(self.mean, dtype=torch.float32, device=scaled.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=scaled.device).view(1, 3, 1, 1)
        return ((scaled - mean) / std).contiguous()

    def resize(self, frame: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8 -> [size, size, 3] uint8 with PIL: padded to a square, resized."""
        square = torch.from_numpy(frame).permute(2, 0, 1)[None]
        padded = pad_to_square(square, self.pad_colour)[0].permute(1, 2, 0).numpy()
        image = Image.fromarray(np.ascontiguousarray(padded))
        return np.asarray(image.resize((self.size, self.size), Image.Resampling.BICUBIC))

    def resize_on(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] uint8 on any device -> [B, 3, size, size] uint8, PIL's bits. One
        plane at a time: the float64 sums then take a plane's bytes (470 MB at 8K), not the
        batch's (22 GB for 16 frames at 8K), and each sum is the same."""
        b, _, h, w = batch.shape
        side = max(h, w)
        if side == self.size:
            return pad_to_square(batch, self.pad_colour)
        weights = torch.from_numpy(bicubic_weights(side, self.size)).to(batch.device)
        out = torch.empty(b, 3, self.size, self.size, dtype=torch.uint8, device=batch.device)
        for i in range(b):
            square = pad_to_square(batch[i : i + 1], self.pad_colour)[0]
            for c in range(3):
                rows = clip8(square[c].double() @ weights.T)  # PIL: horizontal pass first, to 8 bits
                out[i, c] = clip8(weights @ rows.double())
        return out


def clip8(acc: torch.Tensor) -> torch.Tensor:
    """PIL's rounding and clipping of a fixed-point sum back to 8 bits."""
    return torch.floor((acc + (1 << (PRECISION_BITS - 1))) / (1 << PRECISION_BITS)).clamp(0, 255).to(torch.uint8)


def _bicubic(x: float) -> float:
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@functools.lru_cache(maxsize=32)
def bicubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """PIL's bicubic resampling coefficients as a dense [out, in] matrix of its fixed-point
    integers (as float64), computed as Pillow's `precompute_coeffs` does."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    ss = 1.0 / filterscale  # Pillow multiplies by the inverse: the same rounding as it
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        taps = [_bicubic((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = sum(taps)
        for x, w in enumerate(taps):
            w = w / total if total != 0.0 else w
            weights[xx, xmin + x] = int(w * (1 << PRECISION_BITS) + (-0.5 if w < 0 else 0.5))
    return weights


def pad_to_square(batch: torch.Tensor, colour: tuple[int, int, int]) -> torch.Tensor:
    """Centre [B, 3, H, W] uint8 images on a square canvas of `colour`."""
    b, c, h, w = batch.shape
    if h == w:
        return batch
    side = max(h, w)
    canvas = torch.tensor(colour, dtype=batch.dtype, device=batch.device).view(1, c, 1, 1).repeat(b, 1, side, side)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[:, :, top : top + h, left : left + w] = batch
    return canvas


def preprocess_on_device(choice: str, device: torch.device) -> bool:
    """Whether `LONGVU_PREPROCESS` (auto, host or device) runs preprocessing on `device`:
    auto does on a GPU (uint8 frames go up once), not on the CPU (PIL is faster there)."""
    return choice == "device" or (choice == "auto" and device.type != "cpu")


SIGLIP = TowerPreprocess(size=384, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
# DINOv2: shortest edge to 378 then a 378 centre crop, which on a square is one resize.
DINO = TowerPreprocess(size=378, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
