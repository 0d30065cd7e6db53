"""Packed prefill attention against each prompt run alone through transformers' SDPA path."""

from __future__ import annotations

import torch

from models.attention import NAME, PackedPrefill, Piece
from models.kv_cache import SlotCache


def test_the_llm_runs_our_attention(model) -> None:  # type: ignore[no-untyped-def]
    assert model.llm.config._attn_implementation == NAME


def test_a_packed_pass_equals_each_prompt_alone(model) -> None:  # type: ignore[no-untyped-def]
    """Three whole prompts (one of a single position) and the start of a fourth in one pass,
    then the fourth's rest in a second pass that reads the first part from the cache: every
    prompt's last logits equal its own forward pass, and so do the cached keys."""
    cfg = model.llm.config
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randn(n, cfg.hidden_size, generator=gen) for n in (13, 40, 1, 29)]
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    cache = SlotCache(cfg.num_hidden_layers, 4, cfg.num_key_value_heads, 64, head_dim, model.dtype, model.device)

    def run(pieces: list[Piece], embeds: torch.Tensor) -> torch.Tensor:
        packed = PackedPrefill(pieces, cache)
        cache.plan_prefill(packed)
        with torch.inference_mode():
            out = model.llm(inputs_embeds=embeds[None], attention_mask=packed.no_masks(),
                            position_ids=packed.positions[None], cache=cache, use_cache=True,
                            logits_to_keep=packed.last_positions, packed_prefill=packed)
        return out.logits[0]

    first = [Piece(0, 0, 13, 0), Piece(1, 0, 40, 13), Piece(2, 0, 1, 53), Piece(3, 0, 11, 54)]
    logits = run(first, torch.cat([prompts[0], prompts[1], prompts[2], prompts[3][:11]]))
    rest = run([Piece(3, 11, 29, 0)], prompts[3][11:])
    with torch.inference_mode():
        alone = [model.llm(inputs_embeds=p[None], use_cache=True) for p in prompts]
    for i in range(3):
        torch.testing.assert_close(logits[i], alone[i].logits[0, -1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(rest[0], alone[3].logits[0, -1], rtol=1e-4, atol=1e-4)
    for slot, out in enumerate(alone):
        n = prompts[slot].shape[0]
        torch.testing.assert_close(cache.keys[0][slot, :, :n], out.cache.layers[0].keys[0], rtol=1e-4, atol=1e-4)
