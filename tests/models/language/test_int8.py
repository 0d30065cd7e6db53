"""Weight-only int8 for the language model: what is quantised, how, and how close it stays."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import Qwen2Config, Qwen2ForCausalLM

from models.language.int8 import QMAX, Int8Linear, agreement, quantize_linears, quantized_agreement
from models.model import LongVU, load_longvu


@pytest.fixture(scope="module")
def int8_model(tiny_checkpoint: Path) -> LongVU:
    return load_longvu(str(tiny_checkpoint), weights="int8")


def _linears(module: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in module.named_modules() if isinstance(m, (nn.Linear, Int8Linear))}


def test_every_linear_layer_of_the_llm_is_int8_and_nothing_else(model: LongVU, int8_model: LongVU) -> None:
    float_llm, int8_llm = _linears(model.llm), _linears(int8_model.llm)
    assert float_llm.keys() == int8_llm.keys()
    assert len(int8_llm) == 7 * model.llm.config.num_hidden_layers + 1  # q k v o, gate up down; the head
    assert all(isinstance(m, nn.Linear) for m in float_llm.values())
    assert all(isinstance(m, Int8Linear) and m.qweight.dtype == torch.int8 for m in int8_llm.values())
    assert int8_model.weights == "int8" and model.weights == "float"
    # The embedding table, the norms, the connector and both towers: as loaded, in the model dtype.
    for name in ("embed_tokens.weight", "norm.weight", "layers.0.input_layernorm.weight"):
        ours = int8_model.llm.model.get_parameter(name)
        assert ours.dtype == model.dtype and torch.equal(ours, model.llm.model.get_parameter(name))
    for ours, theirs in ((int8_model.connector, model.connector), (int8_model.towers.siglip, model.towers.siglip),
                         (int8_model.towers.dino, model.towers.dino)):
        assert not any(isinstance(m, Int8Linear) for m in ours.modules())
        for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b), name


def test_each_output_channel_has_its_own_scale() -> None:
    linear = nn.Linear(5, 3, bias=True)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0, 2.0], [0.01, 0.02, -0.03, 0.0, 0.0],
                                          [0.0] * 5]))
    q = Int8Linear.quantize(linear)
    assert q.scale[:2].tolist() == pytest.approx([2.0 / QMAX, 0.03 / QMAX])
    assert q.qweight[0].tolist() == [64, -127, 32, 0, 127] and q.qweight[1].tolist() == [42, 85, -127, 0, 0]
    assert q.qweight[2].tolist() == [0] * 5  # a row of zeros stays zero (no division by a zero scale)
    assert torch.equal(q.bias, linear.bias)
    x = torch.randn(4, 2, 5)
    deq = q.qweight.float() * q.scale[:, None]
    torch.testing.assert_close(q(x), x @ deq.T + linear.bias)
    assert (deq - linear.weight).abs().le(q.scale[:, None] / 2 + 1e-7).all()  # round to nearest


def test_a_tied_head_gets_its_own_int8_copy() -> None:
    """Llama-3.2-3B ties its head to the embedding: the head turns int8, the table stays."""
    config = Qwen2Config(hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=300, tie_word_embeddings=True)
    llm = Qwen2ForCausalLM(config).eval()
    table = llm.get_input_embeddings().weight.detach().clone()
    assert quantize_linears(llm) == 8
    assert isinstance(llm.lm_head, Int8Linear) and not llm.config.tie_word_embeddings
    assert torch.equal(llm.get_input_embeddings().weight, table)
    torch.testing.assert_close(llm.lm_head.qweight.float() * llm.lm_head.scale[:, None], table,
                               atol=table.abs().max().item() / QMAX, rtol=0)


def _logits(llm: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return llm(input_ids=ids).logits[0]


def test_the_tiny_model_agrees_with_float(model: LongVU, int8_model: LongVU) -> None:
    ids = torch.randint(0, model.llm.config.vocab_size, (1, 4096), generator=torch.Generator().manual_seed(0))
    seen = agreement(_logits(model.llm, ids), _logits(int8_model.llm, ids))
    assert seen.top1 >= 0.99 and seen.decided_top1 >= 0.99
    assert seen.cosine_min >= 0.999


def test_a_qwen2_7b_shaped_layer_agrees_with_float() -> None:
    """The released widths (one decoder layer, the full vocabulary), random weights: over
    the positions where float's greedy token is decided, int8 picks the same one."""
    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=1, num_attention_heads=28,
                         num_key_value_heads=4, vocab_size=152064)
    llm = Qwen2ForCausalLM(config).eval()
    seen = quantized_agreement(llm, torch.randint(0, config.vocab_size, (1, 256)))
    assert seen.decided >= 0.2  # enough positions to judge by
    assert seen.decided_top1 >= 0.99
    assert seen.cosine_min >= 0.999
