"""The LongVU connector: per-tower projectors, the Spatial Vision Aggregator, the
LLM projector and the newline token.

Attribute names mirror the checkpoint (`model.mm_projector_aux_0.0.weight`, ...) so
that `Connector.state_dict()` keys, prefixed with `model.`, are the checkpoint keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.arithmetic import unpad_extent
from models.config import LongVUConfig

SVA_HEADS = 16  # hard-coded in the reference's VisionCrossAttentionLayer


def _norm_linear(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, out_dim, bias=False))


class MultiKVCrossAttention(nn.Module):
    """Queries attend to the concatenated tokens of every tower."""

    def __init__(self, dim: int, num_kvs: int, num_heads: int = SVA_HEADS) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"vision_hidden_size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.num_kvs = num_kvs
        self.q_proj = _norm_linear(dim, dim)
        for i in range(num_kvs):
            setattr(self, f"k_proj_{i}", _norm_linear(dim, dim))
            setattr(self, f"v_proj_{i}", _norm_linear(dim, dim))
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def forward(
        self, queries: torch.Tensor, latents: list[torch.Tensor], mask: torch.Tensor
    ) -> torch.Tensor:
        bsz, q_len, dim = queries.shape
        keys = torch.cat([getattr(self, f"k_proj_{i}")(x) for i, x in enumerate(latents)], 1)
        values = torch.cat([getattr(self, f"v_proj_{i}")(x) for i, x in enumerate(latents)], 1)

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(bsz, -1, self.num_heads, dim // self.num_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.q_proj(queries)).contiguous(),
            heads(keys).contiguous(),
            heads(values).contiguous(),
            attn_mask=mask,
        )
        return self.o_proj(out.transpose(1, 2).reshape(bsz, q_len, dim))


class SVAMLP(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(dim, dim, bias=False)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class VisionCrossAttentionLayer(nn.Module):
    def __init__(self, dim: int, kv_sizes: list[int]) -> None:
        super().__init__()
        self.proj_context = nn.Linear(dim, dim, bias=False)
        self.proj_in = nn.Linear(2 * dim, dim, bias=False)
        self.proj_out = SVAMLP(dim)
        self.norm = nn.LayerNorm(dim)
        self.cross_attn = MultiKVCrossAttention(dim, len(kv_sizes))
        self.kv_sizes = kv_sizes
        for i, size in enumerate(kv_sizes):
            if size > 1:
                setattr(self, f"pos_embed_{i}", nn.Parameter(torch.zeros(size**2, dim)))

    def forward(
        self,
        queries: torch.Tensor,
        context: torch.Tensor,
        latents: list[torch.Tensor],
        mask: torch.Tensor,
    ) -> torch.Tensor:
        residual = queries
        queries = self.proj_in(torch.cat([queries, self.proj_context(context)], -1))
        with_pos = [
            x + getattr(self, f"pos_embed_{i}").to(x.dtype) if x.shape[1] > 1 else x
            for i, x in enumerate(latents)
        ]
        queries = queries + self.cross_attn(queries, with_pos, mask)
        return self.proj_out(self.norm(queries)) + residual


class VisionTokenSampler(nn.Module):
    def __init__(self, dim: int, kv_sizes: list[int], depth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(VisionCrossAttentionLayer(dim, kv_sizes) for _ in range(depth))

    def forward(self, queries, context, latents, mask):  # type: ignore[no-untyped-def]
        for layer in self.layers:
            queries = layer(queries, context, latents, mask)
        return queries


def _tower_projector(in_dim: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.LayerNorm(dim))


class Connector(nn.Module):
    def __init__(self, config: LongVUConfig, tower_hidden_sizes: tuple[int, int]) -> None:
        super().__init__()
        dim = config.vision_hidden_size
        self.config = config
        self.mm_projector = nn.Sequential(
            nn.Linear(dim * len(config.query_num_list), config.hidden_size),
            nn.GELU(),
            nn.Linear(config.hidden_size, config.hidden_size),
        )
        self.mm_projector_aux_0 = _tower_projector(tower_hidden_sizes[0], dim)
        self.mm_projector_aux_1 = _tower_projector(tower_hidden_sizes[1], dim)
        kv_sizes = [int(n**0.5) // config.query_side for n in config.aux_token_len_list]
        self.vision_sampler_0 = VisionTokenSampler(dim, kv_sizes, config.connector_depth)
        self.vision_query = nn.Parameter(torch.zeros(len(config.query_num_list), dim))
        self.image_newline = nn.Parameter(torch.zeros(config.hidden_size))

    def _to_windows(self, x: torch.Tensor) -> torch.Tensor:
        """[B, S*S, C] -> [B*Q*Q, r*r, C]: the r x r patch of tokens under each query."""
        b, n, c = x.shape
        side, q = int(n**0.5), self.config.query_side
        r = side // q
        return x.view(b, q, r, q, r, c).permute(0, 1, 3, 2, 4, 5).reshape(b * q * q, r * r, c)

    def aggregate(
        self, siglip: torch.Tensor, dino: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """SVA fusion: [B, 576, Cs], [B, 576, Cd] tower maps -> [B, 144, vision_hidden]."""
        dtype = siglip.dtype
        towers = [self.mm_projector_aux_0(siglip).to(dtype), self.mm_projector_aux_1(dino).to(dtype)]
        b, nq = siglip.shape[0], self.config.query_num_list[0]
        context = towers[0].mean(1)[:, None, None, :].expand(-1, nq, 1, -1).flatten(0, 1)
        queries = self.vision_query[0].view(1, 1, -1).expand(b * nq, 1, -1)
        latents = [self._to_windows(t) for t in towers]
        attn_mask = mask.to(siglip.device).repeat(b, len(towers))[:, None, None, :]
        out = self.vision_sampler_0(queries, context, latents, attn_mask)
        return out.view(b, nq, -1)

    def attention_mask(self, size: tuple[int, int]) -> torch.Tensor:
        """[query_side**2, r*r] mask of the tower tokens under each query: those of the
        picture, not of the padding (the reference's `unmask_attention_mask`, `size` read as
        (width, height)); a query with nothing under it sees its whole patch."""
        aux, q = self.config.aux_side, self.config.query_side
        picture = torch.zeros(aux, aux, dtype=torch.bool)
        rows, cols = unpad_extent(aux, aux, size)
        picture[rows, cols] = True
        r = aux // q
        mask = picture.view(q, r, q, r).permute(0, 2, 1, 3).reshape(q * q, r * r)
        mask[mask.sum(-1) == 0] = True
        return mask

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.mm_projector(features)
