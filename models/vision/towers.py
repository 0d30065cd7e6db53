"""The two vision towers (SPEC section 1, step 3), loaded apart from the LongVU checkpoint.

SigLIP gives its last hidden state before the post-layernorm, DINOv2 its patch tokens
(no CLS); both maps are resized bilinearly to the connector's grid (24x24 = 576).

DINOv2 sees 378x378 pixels (27x27 patches) while its position embeddings are a 37x37 grid.
The released weights were trained with transformers 4.42.4, which resized that grid with
`scale_factor=(27 + 0.1) / 37`; transformers 5 resizes to `size=(27, 27)`, which gives other
features. Our towers resize as 4.42.4 did, whatever transformers is installed.
"""

from __future__ import annotations

import math

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


def legacy_position_embeddings(position_embeddings: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """[1, 1 + N*N, C] (CLS first) -> [1, 1 + rows*cols, C], as transformers 4.42.4 resized
    DINOv2's grid: bicubic in float32 with a scale factor of (n + 0.1) / N per axis."""
    n = position_embeddings.shape[1] - 1
    side = int(math.sqrt(n))
    if n == rows * cols and rows == cols:
        return position_embeddings
    cls_token, grid = position_embeddings[:, :1], position_embeddings[:, 1:]
    dim = grid.shape[-1]
    grid = grid.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    resized = F.interpolate(grid.float(), scale_factor=((rows + 0.1) / side, (cols + 0.1) / side),
                            mode="bicubic", align_corners=False).to(position_embeddings.dtype)
    if resized.shape[-2:] != (rows, cols):
        raise ValueError(f"position embeddings resized to {tuple(resized.shape[-2:])}, not {(rows, cols)}")
    return torch.cat([cls_token, resized.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)], dim=1)


def use_legacy_position_resize(dino: Dinov2Model) -> None:
    """Make a transformers-5 DINOv2 resize its position embeddings as 4.42.4 did."""
    embeddings = dino.embeddings
    patch = dino.config.patch_size

    def interpolate(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return legacy_position_embeddings(embeddings.position_embeddings, height // patch, width // patch)

    embeddings.interpolate_pos_encoding = interpolate


class VisionTowers:
    def __init__(self, siglip: SiglipVisionModel, dino: Dinov2Model, side: int) -> None:
        self.siglip = siglip.eval()
        self.dino = dino.eval()
        use_legacy_position_resize(self.dino)
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
