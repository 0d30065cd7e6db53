"""The LLM's attention, registered with transformers as `longvu`: packed prefill without a
dense mask.

A prefill pass packs pieces of several prompts into one sequence, so the linear layers run
over all of them at once; attention then runs piece by piece. A piece that begins its
prompt is plain causal attention over its own keys (`is_causal`, no mask, so SDPA picks
its fast kernels); a piece that continues a prompt attends to its slot's cached keys with a
lower-right causal mask of its own size. Every other call (a decode step with its window
mask, or `llm(...)` on one prompt) is transformers' SDPA attention, masks included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

if TYPE_CHECKING:
    from models.kv_cache import SlotCache

NAME = "longvu"


@dataclass(frozen=True)
class Piece:
    """Positions [start, end) of the prompt in `slot`, at `offset` in the packed pass."""

    slot: int
    start: int
    end: int
    offset: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class PackedPrefill:
    pieces: list[Piece]
    cache: SlotCache

    @property
    def positions(self) -> torch.Tensor:
        return torch.cat([torch.arange(p.start, p.end) for p in self.pieces])

    @property
    def last_positions(self) -> torch.Tensor:
        """Where in the pass each piece ends (its logits give a finished prompt's first token)."""
        return torch.tensor([p.offset + p.length - 1 for p in self.pieces])

    def no_masks(self) -> dict[str, None]:
        """transformers' ready-made mask mapping: none, so it builds no dense mask."""
        return dict.fromkeys(("full_attention", "sliding_attention"))


def packed_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float | None = None,
                     packed_prefill: PackedPrefill | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    if packed_prefill is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    groups = query.shape[1] // key.shape[1]
    cache, layer = packed_prefill.cache, module.layer_idx  # type: ignore[attr-defined]
    outputs = []
    for p in packed_prefill.pieces:
        q = query[:, :, p.offset : p.offset + p.length]
        if p.start == 0:
            k, v = key[:, :, p.offset : p.offset + p.length], value[:, :, p.offset : p.offset + p.length]
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=groups > 1)
        else:
            k = repeat_kv(cache.keys[layer][p.slot : p.slot + 1, :, : p.end], groups)
            v = repeat_kv(cache.values[layer][p.slot : p.slot + 1, :, : p.end], groups)
            rows = torch.arange(p.start, p.end, device=q.device)
            mask = torch.arange(p.end, device=q.device)[None, :] <= rows[:, None]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling)
        outputs.append(out)
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, packed_attention)
# Outside a packed prefill the mask is SDPA's own (padding included).
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
