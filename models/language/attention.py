"""The LLM's attention, registered with transformers as `longvu`: packed prefill without a
dense mask, and grouped-query attention that never copies the keys and values.

A prefill pass packs pieces of several prompts into one sequence, so the linear layers run
over all of them at once; attention then runs piece by piece. A piece that begins its
prompt is plain causal attention over its own keys (`is_causal`, no mask, so SDPA picks
its fast kernels); a piece that continues a prompt attends to its slot's cached keys with a
lower-right causal mask of its own size. A decode step attends to its window of the cache
under its window mask.

Masked attention over cached keys (decode steps, continued pieces) is `grouped_attention`:
the query heads that share a KV head are folded into the query length, so SDPA reads each
KV head as stored. `repeat_kv` would write and read again every layer's keys and values
once per query head of a group (7x at Qwen2-7B's 28/4 heads; ~1.9 GB a layer at 16 rows of
8k positions). Every other call (`llm(...)` on one prompt) is transformers' SDPA attention.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from models.language.kv_cache import PackedPrefill

NAME = "longvu"


def grouped_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor,
                      scale: float | None) -> torch.Tensor:
    """query [B, H, L, D] against key and value [B, KV, S, D] as stored, H = KV * G; `mask`
    [B or 1, 1, L, S] (True: attend), the same for every head. Returns [B, H, L, D].

    Query head h uses KV head h // G (transformers' `repeat_kv` order), so the G query heads
    of a KV head are consecutive: folded into the length, [B, KV, G * L, D] meets the keys
    head for head. The mask is repeated over the G folds only when L > 1 (bytes of booleans,
    never the keys)."""
    b, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    folded = query.reshape(b, kv_heads, groups * length, dim)
    if length > 1 and groups > 1:
        mask = mask.expand(-1, groups, -1, -1).reshape(mask.shape[0], 1, groups * length, mask.shape[-1])
    out = F.scaled_dot_product_attention(folded, key, value, attn_mask=mask, scale=scale)
    return out.reshape(b, heads, length, dim)


def packed_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float | None = None,
                     packed_prefill: PackedPrefill | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    if packed_prefill is not None:
        return _packed(module, query, key, value, packed_prefill, scaling), None
    if attention_mask is not None and attention_mask.dtype == torch.bool and attention_mask.shape[1] == 1:
        mask = attention_mask[..., : key.shape[-2]]
        return grouped_attention(query, key, value, mask, scaling).transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)


def _packed(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
            packed: PackedPrefill, scaling: float | None) -> torch.Tensor:
    groups = query.shape[1] // key.shape[1]
    cache, layer = packed.cache, module.layer_idx  # type: ignore[attr-defined]
    outputs = []
    for p in packed.pieces:
        q = query[:, :, p.offset : p.offset + p.length]
        if p.start == 0:
            k, v = key[:, :, p.offset : p.offset + p.length], value[:, :, p.offset : p.offset + p.length]
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=groups > 1)
        else:
            k = cache.keys[layer][p.slot : p.slot + 1, :, : p.end]
            v = cache.values[layer][p.slot : p.slot + 1, :, : p.end]
            rows = torch.arange(p.start, p.end, device=q.device)
            mask = torch.arange(p.end, device=q.device)[None, :] <= rows[:, None]
            out = grouped_attention(q, k, v, mask[None, None], scaling)
        outputs.append(out)
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous()


AttentionInterface.register(NAME, packed_attention)
# Outside a packed prefill the mask is SDPA's own (padding included).
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
