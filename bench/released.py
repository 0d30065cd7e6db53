"""The released LongVU_Qwen2_7B shapes with random weights, for the benchmarks: SigLIP
so400m and DINOv2-giant towers, the SVA connector at 1024, a Qwen2-7B language model,
around the tiny checkpoint's tokenizer (nothing is downloaded). `layers` cuts every
transformer stack to that many layers: the same widths and code path, on a CPU in seconds."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch
from transformers import Dinov2Config, Dinov2Model, SiglipVisionConfig, SiglipVisionModel

from models.config import LongVUConfig
from models.language.int8 import Weights, quantize_linears
from models.model import LongVU, default_dtype, llm_classes, llm_config, load_longvu
from models.tiny import write_tiny_checkpoint
from models.vision.connector import Connector
from models.vision.towers import VisionTowers

QWEN2_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                num_key_value_heads=4, vocab_size=152064, vision_hidden_size=1024, max_window_layers=28)
SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                     image_size=384, patch_size=14)
DINOV2_GIANT = dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, mlp_ratio=4, image_size=518,
                    patch_size=14, use_swiglu_ffn=True)


def cut(config: dict, layers: int | None) -> dict:
    return dict(config, num_hidden_layers=layers) if layers else config


def released_model(tiny: LongVU, dtype: torch.dtype, layers: int | None = None, llm: bool = True) -> LongVU:
    """`tiny` with the released towers and connector and, with `llm`, a Qwen2-7B-shaped
    language model (else the tiny one stays: ingest never runs it)."""
    qwen = cut(QWEN2_7B, layers) if llm else dict(vision_hidden_size=QWEN2_7B["vision_hidden_size"])
    config = LongVUConfig.from_dict(dict(tiny.config.raw, **qwen))
    parts: dict = {}
    with torch.device(tiny.device):
        torch.set_default_dtype(dtype)
        try:
            towers = VisionTowers(SiglipVisionModel(SiglipVisionConfig(**cut(SIGLIP_SO400M, layers))),
                                  Dinov2Model(Dinov2Config(**cut(DINOV2_GIANT, layers))), config.aux_side)
            parts["connector"] = Connector(config, towers.hidden_sizes).eval()
            if llm:
                parts["llm"] = llm_classes(config)[1](llm_config(config)).eval()
        finally:
            torch.set_default_dtype(torch.float32)
    for module in (towers.siglip, towers.dino, *parts.values()):
        module.requires_grad_(False)
    return dataclasses.replace(tiny, config=config, towers=towers, dtype=dtype, **parts)


def bench_model(tiny_only: bool, layers: int | None, dtype_name: str | None,
                weights: Weights = "float") -> tuple[LongVU, str]:
    """The model a bench runs and a line naming it: on a GPU (or anywhere with `layers`) the
    released shapes with random weights, else (or with `tiny_only`) the tiny checkpoint;
    its LLM's linear layers in int8 with `weights="int8"`, as LONGVU_LLM_WEIGHTS does."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tiny = load_longvu(str(write_tiny_checkpoint(Path(tmp))), device=device)
    big = not tiny_only and (device.type == "cuda" or layers is not None)
    dtype = getattr(torch, dtype_name) if dtype_name else default_dtype(device)
    model = released_model(tiny, dtype, layers) if big else tiny
    if weights == "int8":
        quantize_linears(model.llm)
        model = dataclasses.replace(model, weights=weights)
    cut_to = f", {layers} layer(s) a stack" if layers else ""
    shape = f"Qwen2-7B, SigLIP so400m, DINOv2-giant shapes{cut_to}, random weights" if big else "tiny checkpoint"
    where = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    return model, f"{shape} on {where}, {model.dtype}, LLM weights {weights}"
