"""What the released models need in memory, and how many answers fit on 24, 48 and 80 GB.

    python bench/memory.py              # the table, by arithmetic from the released configs
    python bench/memory.py --measure    # on a GPU: the 7B's weights measured (float16, int8) beside the arithmetic

Parameters are counted on PyTorch's meta device from the released configs (LongVU_Qwen2_7B:
Qwen2-7B, SigLIP so400m, DINOv2-giant, the SVA connector; LongVU_Llama3_2_3B: Llama-3.2-3B
and the same towers), nothing downloaded. int8 weight-only: each linear layer's weights in
one byte with a float32 scale per output row, embeddings in float16 (a tied head gets
its own int8 copy). KV bytes: keys and
values of every layer for one position (float16); a full-length answer holds 8192 prompt
positions, 4096 new tokens and a scratch position. Answers that fit: `models.language.sizing` with
LONGVU_GPU_MEMORY_FRACTION 0.9 and the prefix cache's two entries, as the server sizes its
slots at start-up. The ingest
working set is an estimate: a tower step of 64 frames (DINOv2-giant's activations, the
larger tower) and the frames' staging (bounded by the 1 GiB staging pool).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import (
    Dinov2Config,
    Dinov2Model,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.released import DINOV2_GIANT, QWEN2_7B, SIGLIP_SO400M  # noqa: E402
from models.config import LongVUConfig  # noqa: E402
from models.language.int8 import quantize_linears  # noqa: E402
from models.language.sizing import GIB, kv_bytes_per_position, prefix_entry_bytes, sizing, slot_positions  # noqa: E402
from models.tiny import LONGVU_CONFIG  # noqa: E402
from models.vision.connector import Connector  # noqa: E402

LLAMA_3B = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=True)
TOWER_STEP_FRAMES = 64
STAGING_LIMIT = GIB
PREFIX_ENTRIES = 2  # LONGVU_PREFIX_CACHE's default
FP16 = torch.float16


def on_meta(build):  # type: ignore[no-untyped-def]
    with torch.device("meta"):
        return build()


def weight_bytes(model: torch.nn.Module, int8: bool) -> int:
    """float16, or int8 weight-only (`models.language.int8`): linear weights a byte each plus a
    float32 scale a row. A head tied to the embedding is one tensor in float16 and its own
    int8 copy in int8."""
    total, seen = 0, set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if int8 and isinstance(module, torch.nn.Linear) and name == "weight":
                total += p.numel() + p.shape[0] * 4
            elif id(p) not in seen:
                total += p.numel() * 2
            seen.add(id(p))
    return total


def ingest_bytes(width: int, height: int) -> int:
    """A tower step's working set: DINOv2-giant's activations for 64 frames of 729 tokens
    (the residual, attention's output and the MLP's hidden layer) and the frames staged."""
    tokens = (378 // 14) ** 2
    activations = TOWER_STEP_FRAMES * tokens * (4 * DINOV2_GIANT["hidden_size"] + 4 * DINOV2_GIANT["hidden_size"]) * 2
    staged = min(STAGING_LIMIT, TOWER_STEP_FRAMES * width * height * 3)
    return activations + staged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", action="store_true", help="on a GPU, load the 7B's shapes and measure")
    args = parser.parse_args()

    towers = on_meta(lambda: (SiglipVisionModel(SiglipVisionConfig(**SIGLIP_SO400M)),
                              Dinov2Model(Dinov2Config(**DINOV2_GIANT))))
    tower_bytes = sum(weight_bytes(t, int8=False) for t in towers)
    models = {
        "LongVU_Qwen2_7B": (Qwen2ForCausalLM, Qwen2Config(**{k: v for k, v in QWEN2_7B.items()
                                                              if k != "vision_hidden_size"})),
        "LongVU_Llama3_2_3B": (LlamaForCausalLM, LlamaConfig(**LLAMA_3B)),
    }
    gb = lambda n: f"{n / GIB:.2f} GiB"  # noqa: E731
    print("| | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    rows: dict[str, list[str]] = {}
    for cls, config in models.values():
        llm = on_meta(lambda cls=cls, config=config: cls(config))
        longvu = LongVUConfig.from_dict(dict(LONGVU_CONFIG, hidden_size=config.hidden_size,
                                             vision_hidden_size=QWEN2_7B["vision_hidden_size"]))
        connector = on_meta(lambda longvu=longvu: Connector(longvu, (SIGLIP_SO400M["hidden_size"],
                                                                     DINOV2_GIANT["hidden_size"])))
        fp16, int8 = weight_bytes(llm, int8=False), weight_bytes(llm, int8=True)
        connector_bytes = weight_bytes(connector, int8=False)
        kv = kv_bytes_per_position(config, FP16)
        slot = slot_positions(8192, 4096) * kv
        rows.setdefault("LLM weights, float16", []).append(gb(fp16))
        rows.setdefault("LLM weights, int8", []).append(gb(int8))
        rows.setdefault("towers (SigLIP so400m + DINOv2-giant), float16", []).append(gb(tower_bytes))
        rows.setdefault("connector (SVA), float16", []).append(gb(connector_bytes))
        rows.setdefault("KV per position", []).append(f"{kv / 1024:.0f} KiB")
        rows.setdefault("KV per full-length answer (12,289 positions)", []).append(gb(slot))
        rows.setdefault("prefix cache entry (a prompt's KV and embeddings)", []).append(
            gb(prefix_entry_bytes(config, FP16, 8192)))
        rows.setdefault("ingest working set, 720p (estimate)", []).append(gb(ingest_bytes(1280, 720)))
        rows.setdefault("ingest working set, 4K (estimate)", []).append(gb(ingest_bytes(3840, 2160)))
        for weights, llm_bytes in (("float16", fp16), ("int8", int8)):
            held = llm_bytes + tower_bytes + connector_bytes
            for card in (24, 48, 80):
                fit = sizing(config, FP16, card * 10**9, 0.9, held, 8192, 4096, 8192, PREFIX_ENTRIES).slots
                rows.setdefault(f"answers at once on {card} GB, {weights}", []).append(str(fit))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(values) + " |")
    if args.measure and torch.cuda.is_available():
        from bench.released import bench_model

        model, _ = bench_model(False, None, "float16")
        loaded = torch.cuda.memory_allocated()
        quantize_linears(model.llm)
        torch.cuda.empty_cache()
        print(f"measured on {torch.cuda.get_device_name()}: the 7B's shapes loaded take {loaded / GIB:.2f} GiB "
              f"with float16 weights, {torch.cuda.memory_allocated() / GIB:.2f} GiB with int8")
    elif args.measure:
        print("measured: no GPU here; the figures above are arithmetic")


if __name__ == "__main__":
    main()
