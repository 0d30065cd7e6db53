import torch

from models.build import build_inputs
from models.generate import SamplingParams, generate_ids, generate_text
from models.prompt import IMAGE_TOKEN_INDEX, prompt_ids, stop_token_ids
from tests.models.synthetic import synthetic_encoded


def _embeds(model):  # type: ignore[no-untyped-def]
    return build_inputs(model, synthetic_encoded(model, 2), "Describe it.").inputs_embeds


def test_greedy_is_deterministic_and_bounded(model) -> None:  # type: ignore[no-untyped-def]
    params = SamplingParams(max_new_tokens=6)
    first = list(generate_ids(model, _embeds(model), params, stop_ids=set()))
    assert len(first) == 6
    assert list(generate_ids(model, _embeds(model), params, stop_ids=set())) == first


def test_stops_at_the_end_token(model) -> None:  # type: ignore[no-untyped-def]
    free = list(generate_ids(model, _embeds(model), SamplingParams(max_new_tokens=8), stop_ids=set()))
    stop = free[3]
    stopped = list(generate_ids(model, _embeds(model), SamplingParams(max_new_tokens=8), stop_ids={stop}))
    assert stopped == free[: free.index(stop)]


def test_default_stop_tokens_include_end_of_turn(model) -> None:  # type: ignore[no-untyped-def]
    assert model.tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(model.tokenizer)


def test_stops_when_cancelled(model) -> None:  # type: ignore[no-untyped-def]
    produced: list[int] = []
    for token in generate_ids(model, _embeds(model), SamplingParams(max_new_tokens=50),
                              cancelled=lambda: len(produced) >= 2, stop_ids=set()):
        produced.append(token)
    assert len(produced) == 2


def test_sampling_is_seeded_and_top_p_narrows(model) -> None:  # type: ignore[no-untyped-def]
    hot = SamplingParams(max_new_tokens=8, temperature=5.0, seed=7)
    a = list(generate_ids(model, _embeds(model), hot, stop_ids=set()))
    assert a == list(generate_ids(model, _embeds(model), hot, stop_ids=set()))
    greedy = list(generate_ids(model, _embeds(model), SamplingParams(max_new_tokens=8), stop_ids=set()))
    narrow = SamplingParams(max_new_tokens=8, temperature=5.0, top_p=1e-6, seed=7)
    assert list(generate_ids(model, _embeds(model), narrow, stop_ids=set())) == greedy


def test_text_stream_joins_to_the_decoded_answer(model) -> None:  # type: ignore[no-untyped-def]
    params = SamplingParams(max_new_tokens=10)
    ids = list(generate_ids(model, _embeds(model), params))
    text = "".join(generate_text(model, _embeds(model), params))
    assert text == model.tokenizer.decode(ids, skip_special_tokens=True)


def test_prompt_has_one_video_slot(model) -> None:  # type: ignore[no-untyped-def]
    ids = prompt_ids(model.tokenizer, model.config, "is there an <image> here?")
    assert ids.count(IMAGE_TOKEN_INDEX) == 1
    at = ids.index(IMAGE_TOKEN_INDEX)
    decoded = model.tokenizer.decode(ids[:at]) + "<image>" + model.tokenizer.decode(ids[at + 1 :])
    assert decoded == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
        "is there an <image> here?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert torch.tensor(ids).dtype == torch.int64


def test_a_batch_gives_each_prompt_its_own_answer(model) -> None:  # type: ignore[no-untyped-def]
    """Prompts of different lengths, left-padded together, answer as they do alone."""
    from models.generate import BatchDecoder

    prompts = [build_inputs(model, synthetic_encoded(model, n), q).inputs_embeds[0]
               for n, q in ((2, "Describe it."), (3, "What is the person holding in the left hand?"), (1, "Why?"))]
    params = [SamplingParams(max_new_tokens=k) for k in (6, 4, 8)]
    alone = [list(generate_ids(model, p[None], sp, stop_ids=set())) for p, sp in zip(prompts, params, strict=True)]
    batch = BatchDecoder(model, prompts, params, [set(), set(), set()])
    together: list[list[int]] = [[], [], []]
    while not batch.done:
        for row, token in enumerate(batch.step([False, False, False])):
            if token is not None:
                together[row].append(token)
    assert together == alone


def test_a_cancelled_row_stops_alone(model) -> None:  # type: ignore[no-untyped-def]
    from models.generate import BatchDecoder

    prompts = [_embeds(model)[0], _embeds(model)[0]]
    batch = BatchDecoder(model, prompts, [SamplingParams(max_new_tokens=5)] * 2, [set(), set()])
    first = batch.step([False, False])
    assert None not in first
    second = batch.step([True, False])
    assert second[0] is None and second[1] is not None
    rest = [batch.step([True, False]) for _ in range(3)]
    assert all(r[0] is None for r in rest) and batch.done
