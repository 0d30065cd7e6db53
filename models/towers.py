"""The two vision towers (SPEC section 1, step 3), loaded apart from the LongVU checkpoint.

SigLIP gives its last hidden state before the post-layernorm, DINOv2 its patch tokens
(no CLS); both maps are resized bilinearly to the connector's grid (24x24 = 576).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import Dinov2Model, SiglipVisionModel

DEFAULT_SIGLIP = "google/siglip-so400m-patch14-384"
DEFAULT_DINO = "facebook/dinov2-giant"


def resize_token_map(tokens: torch.Tensor, side: int) -> torch.Tensor:
    """[B, S*S, C] -> [B, side*side, C], bilinear in float32 as the reference does."""
    b, n, c = tokens.shape
    src = int(n**0.5)
    if src == side:
        return tokens
    grid = tokens.view(b, src, src, c).permute(0, 3, 1, 2).float()
    out = F.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)
    return out.to(tokens.dtype).permute(0, 2, 3, 1).reshape(b, side * side, c)


class VisionTowers:
    def __init__(self, siglip: SiglipVisionModel, dino: Dinov2Model, side: int) -> None:
        self.siglip = siglip.eval()
        self.dino = dino.eval()
        self.side = side

    @classmethod
    def load(
        cls, siglip_path: str, dino_path: str, side: int, dtype: torch.dtype, device: torch.device
    ) -> "VisionTowers":
        siglip = SiglipVisionModel.from_pretrained(siglip_path, dtype=dtype).to(device)
        dino = Dinov2Model.from_pretrained(dino_path, dtype=dtype).to(device)
        return cls(siglip, dino, side)

    @property
    def hidden_sizes(self) -> tuple[int, int]:
        return self.siglip.config.hidden_size, self.dino.config.hidden_size

    @property
    def dtype(self) -> torch.dtype:
        return next(self.siglip.parameters()).dtype

    @torch.inference_mode()
    def encode_siglip(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.siglip(pixel_values=pixels.to(self.dtype), output_hidden_states=True)
        return resize_token_map(out.hidden_states[-1], self.side)

    @torch.inference_mode()
    def encode_dino(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.dino(pixel_values=pixels.to(self.dtype))
        return resize_token_map(out.last_hidden_state[:, 1:], self.side)
