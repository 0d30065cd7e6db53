"""The KV-slot arithmetic against figures worked by hand."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config

from bench.released import QWEN2_7B
from models.language.sizing import GIB, NotEnoughMemory, kv_bytes_per_position, sizing, slot_positions


def test_qwen2_7b_keys_and_values_per_position_and_answer() -> None:
    qwen = Qwen2Config(**{k: v for k, v in QWEN2_7B.items() if k != "vision_hidden_size"})
    assert kv_bytes_per_position(qwen, torch.float16) == 2 * 28 * 4 * 128 * 2 == 57_344  # 56 KiB
    assert slot_positions(8192, 4096) == 12_289
    plan = sizing(qwen, torch.float16, card_bytes=24 * GIB, fraction=0.9, held_bytes=18 * GIB, max_prompt=8192,
                  max_new_tokens=4096, prefill_tokens=8192)
    assert plan.slot_bytes == 12_289 * 57_344  # 0.656 GiB a full-length answer
    assert plan.working_bytes == 8192 * (6 * 3584 + 3 * 18944) * 2 + 2 * GIB
    assert plan.slots == (int(24 * GIB * 0.9) - 18 * GIB - plan.working_bytes) // plan.slot_bytes == 0
    with pytest.raises(NotEnoughMemory, match="LONGVU_MAX_NEW_TOKENS"):
        plan.check()
    roomy = sizing(qwen, torch.float16, 80 * GIB, 0.9, 18 * GIB, 8192, 4096, 8192)
    assert roomy.slots == 77 and "77 answers fit" in roomy.explain()  # (72 - 18 - 3.2) GiB / 0.656 GiB
    roomy.check()


def test_the_prefix_cache_is_sized_with_the_slots() -> None:
    """Each entry holds a full prompt's keys and values and its embeddings."""
    qwen = Qwen2Config(**{k: v for k, v in QWEN2_7B.items() if k != "vision_hidden_size"})
    plain = sizing(qwen, torch.float16, 80 * GIB, 0.9, 18 * GIB, 8192, 4096, 8192)
    cached = sizing(qwen, torch.float16, 80 * GIB, 0.9, 18 * GIB, 8192, 4096, 8192, prefix_entries=2)
    assert cached.prefix_bytes == 2 * 8192 * (57_344 + 3584 * 2)  # 0.49 GiB an entry
    assert cached.budget_bytes == plain.budget_bytes - cached.prefix_bytes
    assert cached.slots == 75 and "0.98 GiB of prefix cache" in cached.explain()  # (50.80 - 0.98) / 0.656
