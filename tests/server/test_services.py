"""Start-up sizing of the KV slots (`server.services.kv_slots`): the GPU's branch run on the
CPU with a made-up card, and the CPU's, which honours the setting."""

from __future__ import annotations

import logging

import pytest

from models.language.sizing import GIB, NotEnoughMemory
from models.model import LongVU
from server.services import kv_slots
from server.settings import Settings

# The tiny model in float32: 2 layers x 1 KV head x 32 dims, keys and values: 512 bytes a
# position; a slot of 8192 + 4096 + 1 positions; a prefill pass of 8192 positions of
# 6 x 64 + 3 x 128 floats, and an ingest step of 2 GiB; two prefix cache entries of 8192
# positions' keys, values and 64-float embeddings.
SLOT = (8192 + 4096 + 1) * 512
WORKING = 8192 * (6 * 64 + 3 * 128) * 4 + 2 * GIB + 2 * 8192 * (512 + 64 * 4)


def test_a_card_gets_the_slots_that_fit(model: LongVU) -> None:
    expected = (int(10 * GIB * 0.9) - GIB - WORKING) // SLOT
    assert expected == 1017  # 5.97 GiB / 6.0 MiB
    assert kv_slots(Settings(), model, device_memory=(10 * GIB, GIB)) == expected
    assert kv_slots(Settings(max_running=4), model, device_memory=(10 * GIB, GIB)) == 4  # set: at most that
    assert kv_slots(Settings(prefix_cache=0), model, device_memory=(10 * GIB, GIB)) == 1019
    assert kv_slots(Settings(gpu_memory_fraction=0.5), model, device_memory=(10 * GIB, GIB)) == \
        (5 * GIB - GIB - WORKING) // SLOT


def test_a_card_too_small_for_one_answer_refuses_to_start(model: LongVU) -> None:
    with pytest.raises(NotEnoughMemory) as refused:
        kv_slots(Settings(), model, device_memory=(3 * GIB, GIB))
    assert "not even one full-length answer fits" in str(refused.value)
    assert "LONGVU_GPU_MEMORY_FRACTION" in str(refused.value)


def test_the_cpu_logs_the_arithmetic_and_keeps_the_setting(model: LongVU, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="longvu"):
        assert kv_slots(Settings(max_running=3), model) == 3
    assert "a full-length answer's KV slot takes" in caplog.text
