"""Packed prefill attention against each prompt run alone through transformers' SDPA path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers.integrations import sdpa_attention as sdpa_module
from transformers.integrations.sdpa_attention import repeat_kv

from models.language.attention import NAME, grouped_attention
from models.language.batching import ContinuousBatch, Sequence
from models.language.kv_cache import PackedPrefill, Piece, SlotCache
from models.language.sampling import SamplingParams


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


@pytest.mark.parametrize("length", [1, 5])
def test_grouped_attention_equals_repeated_heads(length: int) -> None:
    """At Qwen2-7B's head layout (28 query heads, 4 KV heads), a decode row (one query) and
    a continued piece (several, lower-right causal) equal SDPA over `repeat_kv` copies."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 28, length, 16, generator=gen)
    k, v = torch.randn(3, 4, 37, 16, generator=gen), torch.randn(3, 4, 37, 16, generator=gen)
    rows = torch.arange(37 - length, 37)
    mask = (torch.arange(37)[None, :] <= rows[:, None])[None, None].repeat(3, 1, 1, 1)
    mask[1, ..., :9] = False  # rows differ: one that sees less
    expected = F.scaled_dot_product_attention(q, repeat_kv(k, 7), repeat_kv(v, 7), attn_mask=mask, scale=0.3)
    torch.testing.assert_close(grouped_attention(q, k, v, mask, 0.3), expected, rtol=1e-5, atol=1e-5)


def test_decode_and_continued_pieces_never_expand_the_cache(model, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Every attention call over cached keys (a cut prompt's second piece, then decode steps)
    gets the KV heads as stored, never a copy widened to the query heads, and no call asks
    SDPA to widen them (its math path would copy)."""
    cfg = model.llm.config
    assert cfg.num_attention_heads > cfg.num_key_value_heads  # the tiny model has groups to fold
    seen: list[tuple[int, int, bool]] = []
    sdpa = F.scaled_dot_product_attention

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: object) -> torch.Tensor:
        if not kw.get("is_causal"):  # a prompt's first piece attends to its own keys, not the cache
            seen.append((k.shape[1], v.shape[1], bool(kw.get("enable_gqa"))))
        return sdpa(q, k, v, **kw)

    def no_repeat(*_: object) -> torch.Tensor:
        raise AssertionError("repeat_kv copied the keys")

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    monkeypatch.setattr(sdpa_module, "repeat_kv", no_repeat)
    prompt = torch.randn(40, cfg.hidden_size, generator=torch.Generator().manual_seed(1))
    batch = ContinuousBatch(model, slots=2, length=64, prefill_tokens=16)
    first = Sequence(torch.randn(6, cfg.hidden_size), SamplingParams(max_new_tokens=8), frozenset())
    batch.start(first)
    batch.prefill()
    batch.start(Sequence(prompt, SamplingParams(max_new_tokens=4), frozenset()))  # cut: first is decoding
    seen.clear()
    while batch.prefilling or batch.decoding:
        batch.prefill()
        batch.decode()
    assert len(seen) >= 2 * cfg.num_hidden_layers
    assert all(k == v == cfg.num_key_value_heads and not gqa for k, v, gqa in seen), seen
