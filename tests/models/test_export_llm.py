"""The exported language model loads as a plain Hugging Face model and computes ours."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.checkpoint import CheckpointError
from models.export_llm import export_llm


def test_the_export_is_a_plain_checkpoint_of_our_llm(model, tiny_checkpoint: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = export_llm(str(tiny_checkpoint), tmp_path / "llm")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["model_type"] == "qwen2"
    assert not any(key.startswith("model.mm_projector") or "vision" in key for key in load_file(out / "model.safetensors"))
    assert json.loads((out / "generation_config.json").read_text())["repetition_penalty"] == 1.05
    assert AutoTokenizer.from_pretrained(str(out))("<|im_end|>").input_ids == model.tokenizer("<|im_end|>").input_ids
    plain = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    embeds = torch.randn(1, 37, model.llm.config.hidden_size, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        torch.testing.assert_close(plain(inputs_embeds=embeds).logits, model.llm(inputs_embeds=embeds).logits)


def test_a_key_it_cannot_place_fails_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "odd"
    shutil.copytree(tiny_checkpoint, source)
    tensors = load_file(source / "model.safetensors")
    tensors["model.something_else.weight"] = torch.zeros(2)
    save_file(tensors, str(source / "model.safetensors"))
    with pytest.raises(CheckpointError, match="model.something_else.weight"):
        export_llm(str(source), tmp_path / "out")
