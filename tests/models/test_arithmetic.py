"""The method's arithmetic against the numbers of SPEC section 1, at the released defaults
(max_len 8192, 16 reserved, 144 tokens a frame at 12x12, 64 at 8x8)."""

from dataclasses import replace
from fractions import Fraction

import pytest

from models import arithmetic
from models.config import LongVUConfig

RELEASED = LongVUConfig(model_type="cambrian_qwen", hidden_size=3584)
NO_HIGHRES = replace(RELEASED, highres=False)


@pytest.mark.parametrize(("cfg", "prompt_len", "frames"), [
    (RELEASED, 1, 127),  # (8192 - 1 - 16) // 64
    (RELEASED, 40, 127),  # 8136 // 64
    (RELEASED, 100, 126),  # 8076 // 64
    (NO_HIGHRES, 40, 56),  # counted at 144 tokens a frame: 8136 // 144
    (RELEASED, 8176, 1),  # no room at all: at least one frame
])
def test_pruning_applies_from(cfg: LongVUConfig, prompt_len: int, frames: int) -> None:
    assert arithmetic.prune_from(cfg, prompt_len) == frames


def test_always_prune_from_is_the_shortest_prompts_threshold() -> None:
    assert arithmetic.always_prune_from(RELEASED) == arithmetic.prune_from(RELEASED, 1) == 127


@pytest.mark.parametrize(("n", "picked"), [
    (5, [0, 1, 2, 3, 4]),
    (400, list(range(400))),
    (1000, [int(i * 2.5) for i in range(400)]),
    (401, [int(i * 401 / 400) for i in range(400)]),
])
def test_cap_takes_400_uniformly(n: int, picked: list[int]) -> None:
    assert arithmetic.cap_indices(n) == picked


@pytest.mark.parametrize(("prompt_len", "budget"), [(1, 8176), (40, 8137), (8177, 0)])
def test_token_budget_counts_text_tokens_only(prompt_len: int, budget: int) -> None:
    assert arithmetic.token_budget(RELEASED, prompt_len) == budget


@pytest.mark.parametrize(("prompt_len", "room"), [(1, True), (8176, True), (8177, False), (9000, False)])
def test_a_prompt_leaves_room_for_the_video_while_the_budget_is_positive(prompt_len: int, room: bool) -> None:
    assert arithmetic.leaves_room(RELEASED, prompt_len) is room


def test_stc_from_is_the_first_frame_count_past_the_8x8_band() -> None:
    assert arithmetic.stc_from(RELEASED, 40) == 128
    assert arithmetic.stc_from(RELEASED, 1) == 8175 // 64 + 1


@pytest.mark.parametrize(("cfg", "frames", "regime"), [
    # prompt of 40 ids: room 8136, 56 frames fit at 144, 127 at 64
    (RELEASED, 1, "high"),
    (RELEASED, 55, "high"),
    (RELEASED, 56, "query"),
    (RELEASED, 127, "query"),
    (RELEASED, 128, "stc"),
    (RELEASED, 3600, "stc"),
    (NO_HIGHRES, 56, "high"),  # no 8x8 variant: the middle band stays at 12x12
    (NO_HIGHRES, 128, "stc"),
])
def test_regime(cfg: LongVUConfig, frames: int, regime: str) -> None:
    assert arithmetic.regime(cfg, frames, 40) == regime


@pytest.mark.parametrize(("budget", "frames", "k"), [
    (8137, 100, (8137 - 100 * 72) // (156 - 72)),  # 11 frames go up to 12x12
    (8137, 56, (8137 - 56 * 72) // 84),
    (8137, 113, 0),  # 113 * 72 = 8136: one token left, less than one upgrade
    (8137, 127, 0),  # no room left at all
])
def test_query_k(budget: int, frames: int, k: int) -> None:
    # 1280x720 with the quirk: 8x8 maps cut to 8 rows x 4 columns + newline, 12x12 to 12 x 6 + newline.
    assert arithmetic.query_k(budget, frames, 8 * 9, 12 * 13) == k


@pytest.mark.parametrize(("kept", "budget", "chunks", "cut"), [
    (9000, 8137, 13, 67),  # ceil(863 / 13)
    (8138, 8137, 13, 1),
    (8137, 8137, 13, 0),
    (100, 8137, 13, 0),
])
def test_stc_cut(kept: int, budget: int, chunks: int, cut: int) -> None:
    assert arithmetic.stc_cut(kept, budget, chunks) == cut


def test_the_size_quirk_swaps_width_and_height() -> None:
    assert arithmetic.unpad_size(1280, 720, size_quirk=True) == (720, 1280)
    assert arithmetic.unpad_size(1280, 720, size_quirk=False) == (1280, 720)


@pytest.mark.parametrize(("side", "size", "rows", "cols"), [
    (12, (720, 1280), (0, 12), (3, 9)),  # SPEC step 10: 1280x720 with the quirk is 12 rows x 6 columns
    (12, (1280, 720), (3, 9), (0, 12)),  # without it, 6 rows x 12 columns
    (12, (64, 64), (0, 12), (0, 12)),
    (8, (480, 853), (0, 8), (2, 6)),  # the 8x8 map of the quirked 1280x720
    (24, (1280, 100), (11, 13), (0, 24)),  # a thin strip
])
def test_unpad_extent(side: int, size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> None:
    assert arithmetic.unpad_extent(side, side, size) == (slice(*rows), slice(*cols))


def test_lowres_size_scales_and_truncates() -> None:
    assert arithmetic.lowres_size((720, 1280), 12, 8) == (480, 853)


@pytest.mark.parametrize(("times", "taken"), [
    ([0, 0.5, 1.0, 1.2, 2.0], [0, 1.0, 2.0]),  # the first frame at or after each second
    ([0.2, 0.9, 1.1, 3.7, 3.9, 4.0], [0.2, 1.1, 3.7, 4.0]),  # seconds 2 and 3 fall in a gap: one frame
    ([None, 0.0, 0.3], [0.0]),  # a frame without a time is never taken
])
def test_exact_sampling(times: list[float | None], taken: list[float]) -> None:
    sampler = arithmetic.FrameSampler("exact", fps=30)
    picked = [t for t in times if sampler.take(None if t is None else Fraction(t))]
    assert picked == taken


@pytest.mark.parametrize(("fps", "indices"), [(30, [0, 30, 60]), (29.97, [0, 30, 60]), (0.5, list(range(90)))])
def test_reference_sampling_steps_by_the_rounded_rate(fps: float, indices: list[int]) -> None:
    sampler = arithmetic.FrameSampler("reference", fps)
    assert [i for i in range(90) if sampler.take(None)] == indices
