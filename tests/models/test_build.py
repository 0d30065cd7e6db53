import math

import pytest
import torch

from models.build import PromptTooLongError, build_inputs, compress, query_select
from models.language.prompt import prompt_ids
from tests.models.synthetic import synthetic_encoded

QUESTION = "What happens in the video?"


def _room_and_budget(model, question: str = QUESTION) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    n_ids = len(prompt_ids(model.tokenizer, model.config, question))
    room = 8192 - 16 - n_ids  # regime decisions count the placeholder
    return room, room + 1  # the budget counts text tokens only


def test_high_regime_keeps_every_frame_at_12x12(model) -> None:  # type: ignore[no-untyped-def]
    built = build_inputs(model, synthetic_encoded(model, 20), QUESTION)
    assert built.regime == "high" and not built.stc_applied
    assert built.visual_tokens_after == built.visual_tokens_before == 20 * 12 * 13
    n_text = len(built.input_ids) - 1
    assert built.inputs_embeds.shape == (1, n_text + 20 * 156, 64)


def test_embeddings_are_text_then_video_then_text(model) -> None:  # type: ignore[no-untyped-def]
    built = build_inputs(model, synthetic_encoded(model, 3), QUESTION)
    ids = built.input_ids.tolist()
    at = ids.index(-200)
    embeds = built.inputs_embeds[0]
    table = model.llm.get_input_embeddings().weight
    assert torch.equal(embeds[:at], table[ids[:at]])
    assert torch.equal(embeds[at + 3 * 156 :], table[ids[at + 1 :]])
    newline = model.connector.image_newline
    assert torch.equal(embeds[at + 12], newline)  # end of the first row
    assert torch.equal(embeds[at + 3 * 156 - 1], newline)


def test_regime_boundaries(model) -> None:  # type: ignore[no-untyped-def]
    room, _ = _room_and_budget(model)
    hi_max, lo_max = room // 144, room // 64
    regimes = {n: build_inputs(model, synthetic_encoded(model, n), QUESTION).regime
               for n in (hi_max - 1, hi_max, lo_max, lo_max + 1)}
    assert regimes == {hi_max - 1: "high", hi_max: "query", lo_max: "query", lo_max + 1: "stc"}


def test_query_regime_upgrades_as_many_frames_as_fit(model) -> None:  # type: ignore[no-untyped-def]
    _, budget = _room_and_budget(model)
    built = build_inputs(model, synthetic_encoded(model, 100), QUESTION)
    assert built.regime == "query"
    lo, hi = 8 * 9, 12 * 13
    k = math.floor((budget - 100 * lo) / (hi - lo))
    assert built.highres_frames == k > 0
    assert built.visual_tokens_before == 100 * lo
    assert built.visual_tokens_after == 100 * lo + k * (hi - lo) <= budget


def test_query_select_takes_best_frames_in_time_order() -> None:
    lo = torch.zeros(5, 2, 3)
    hi = torch.arange(5).float().view(5, 1, 1).expand(5, 4, 3).clone()
    text = torch.tensor([[1.0, 0.0, 0.0]])
    lo[3, :, 0] = 5.0
    lo[1, :, 0] = 2.0
    lo[4, :, 0] = -1.0
    visual, n = query_select(hi, lo, text, k=2)
    assert n == 2
    assert visual.shape == (3 * 2 + 2 * 4, 3)
    assert torch.equal(visual[2:6], hi[1]) and torch.equal(visual[8:12], hi[3])


def test_stc_regime_identical_frames_leave_anchors_then_even_cut(model) -> None:  # type: ignore[no-untyped-def]
    _, budget = _room_and_budget(model)
    features = torch.randn(1, 144, 64).repeat(600, 1, 1)
    built = build_inputs(model, synthetic_encoded(model, 600, features=features), QUESTION)
    assert built.regime == "stc" and built.stc_applied
    chunks = 600 // 8
    anchors = chunks * 156
    force = math.ceil((anchors - budget) / chunks)
    assert built.visual_tokens_after == min(budget, chunks * (156 - force))


def test_stc_regime_never_exceeds_budget(model) -> None:  # type: ignore[no-untyped-def]
    _, budget = _room_and_budget(model)
    built = build_inputs(model, synthetic_encoded(model, 600), QUESTION)
    assert built.visual_tokens_before == 600 * 156
    # The even cut of ceil(excess / chunks) per chunk overshoots by less than one per chunk.
    assert budget - 600 // 8 < built.visual_tokens_after <= budget
    assert built.inputs_embeds.shape[1] == len(built.input_ids) - 1 + built.visual_tokens_after


def test_compress_cuts_every_chunk_evenly() -> None:
    frames = torch.randn(16, 4, 8, generator=torch.Generator().manual_seed(0))  # nothing similar: all 64 kept
    out = compress(frames, budget=50, threshold=0.7)
    # ceil((64 - 50) / 2) = 7 cut from the end of each chunk of 32 tokens.
    assert torch.equal(out, torch.cat([frames[:8].flatten(0, 1)[:-7], frames[8:].flatten(0, 1)[:-7]]))


@pytest.mark.parametrize(("quirk", "tokens_per_frame"), [(True, 12 * 7), (False, 6 * 13)])
def test_wide_video_frame_size_quirk(model, quirk: bool, tokens_per_frame: int) -> None:  # type: ignore[no-untyped-def]
    encoded = synthetic_encoded(model, 20, width=1280, height=720)
    encoded.size_quirk = quirk
    built = build_inputs(model, encoded, QUESTION)
    assert built.visual_tokens_after == 20 * tokens_per_frame


def test_long_question_applies_the_dino_mask_of_a_short_video(model) -> None:  # type: ignore[no-untyped-def]
    keep = torch.zeros(100, dtype=torch.bool)
    keep[::3] = True
    encoded = synthetic_encoded(model, 100, pruned=False, keep=keep)
    short = build_inputs(model, encoded, QUESTION)
    assert short.frame_indices.tolist() == list(range(100))
    long_question = "the " * 1800
    n_ids = len(prompt_ids(model.tokenizer, model.config, long_question))
    assert (8192 - n_ids - 16) // 64 <= 100  # this prompt calls for pruning
    long = build_inputs(model, encoded, long_question)
    assert long.frame_indices.tolist() == list(range(0, 100, 3))


def test_question_too_long_is_refused(model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PromptTooLongError):
        build_inputs(model, synthetic_encoded(model, 2), "the " * 9000)


def test_the_400_frame_cap_applies_on_the_per_question_path(model) -> None:  # type: ignore[no-untyped-def]
    """At a long context an unpruned video can exceed 400 frames that pass the DINO mask."""
    import dataclasses

    wide = dataclasses.replace(model, config=dataclasses.replace(model.config, tokenizer_model_max_length=32768))
    encoded = synthetic_encoded(wide, 500, pruned=False)
    question = "the " * 1800
    assert (32768 - len(prompt_ids(wide.tokenizer, wide.config, question)) - 16) // 64 <= 500  # pruning applies
    built = build_inputs(wide, encoded, question)
    assert built.frame_indices.tolist() == [int(i * 500 / 400) for i in range(400)]
