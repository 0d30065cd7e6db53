import re

import torch

from models.build import build_inputs
from models.language.generate import MAX_HELD, Detokenizer, generate_ids, generate_text
from models.language.prompt import IMAGE_TOKEN_INDEX, prompt_ids, stop_token_ids
from models.language.sampling import SamplingParams
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


def eager_greedy(model, embeds: torch.Tensor, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    """Plain transformers decoding with its dynamic cache: the path ours must equal."""
    out = model.llm(inputs_embeds=embeds, use_cache=True)
    tokens = [int(out.logits[0, -1].argmax())]
    while len(tokens) < n:
        out = model.llm(input_ids=torch.tensor([[tokens[-1]]]), cache=out.cache, use_cache=True)
        tokens.append(int(out.logits[0, -1].argmax()))
    return tokens


def test_greedy_equals_plain_transformers_decoding(model) -> None:  # type: ignore[no-untyped-def]
    embeds = _embeds(model)
    with torch.inference_mode():
        expected = eager_greedy(model, embeds, 12)
    assert list(generate_ids(model, embeds, SamplingParams(max_new_tokens=12), stop_ids=set())) == expected


def test_detokenizer_holds_back_split_characters(model) -> None:  # type: ignore[no-untyped-def]
    text = "héllo wörld ✓ 日本"
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    detok = Detokenizer(model.tokenizer)
    deltas = [detok.push(i) for i in ids]
    assert "".join(deltas) + detok.flush() == text
    assert all("\ufffd" not in d for d in deltas)
    cut = Detokenizer(model.tokenizer)
    partial = "".join(cut.push(i) for i in model.tokenizer.encode("✓", add_special_tokens=False)[:-1])
    assert partial == "" and cut.flush() != ""  # an unfinished character comes out at the end


def test_bytes_that_never_make_a_character_do_not_stall_the_stream(model) -> None:  # type: ignore[no-untyped-def]
    """A loop on a lone lead byte: its tokens come out, as replacement characters, every
    MAX_HELD tokens; a word after them decodes as itself."""
    lead = model.tokenizer.encode("✓", add_special_tokens=False)[0]  # 0xE2, the first of three bytes
    assert model.tokenizer.decode([lead]) == "\ufffd"
    detok = Detokenizer(model.tokenizer)
    deltas = [detok.push(lead) for _ in range(2 * MAX_HELD + 3)]
    assert [i for i, d in enumerate(deltas) if d] == [MAX_HELD - 1, 2 * MAX_HELD - 1]
    assert set("".join(deltas)) == {"\ufffd"} and len(detok.held) == 3
    word = model.tokenizer.encode(" hello", add_special_tokens=False)
    assert "".join(detok.push(i) for i in word).endswith(" hello")


def test_generation_config_fills_what_a_question_leaves_open(model, tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    from models.language.sampling import GenerationDefaults

    defaults = GenerationDefaults.from_dir(tiny_checkpoint)
    assert (defaults.top_p, defaults.top_k, defaults.repetition_penalty) == (0.8, 20, 1.05)
    assert set(defaults.eos_token_ids) <= model.stop_ids and len(defaults.eos_token_ids) == 2
    params = model.generation.params(64)
    assert (params.temperature, params.top_k, params.repetition_penalty) == (0.0, 20, 1.05)
    own = model.generation.params(64, temperature=0.5, top_p=0.5, top_k=0, repetition_penalty=1.0)
    assert (own.top_p, own.top_k, own.repetition_penalty) == (0.5, 0, 1.0)
    assert GenerationDefaults.from_dir(tiny_checkpoint / "siglip") == GenerationDefaults()  # none: transformers'


def test_repetition_penalty_as_transformers_applies_it(model) -> None:  # type: ignore[no-untyped-def]
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    from models.language.batching import ContinuousBatch, Sequence

    # The batch's penalty, on rows of different penalties and answers at once.
    batch = ContinuousBatch(model, slots=3, length=64)
    answers = {0: ([5, 17, 5, 399], 1.3), 1: ([], 1.3), 2: ([7, 8], 1.0)}
    for slot, (history, penalty) in answers.items():
        seq = Sequence(torch.zeros(1, 8), SamplingParams(repetition_penalty=penalty), frozenset())
        batch.decoding.append(seq)
        batch._penalty[slot], seq.slot = penalty, slot
        batch._remember([seq] * len(history), history)
    logits = torch.randn(3, model.llm.config.vocab_size)
    penalized = batch._penalized(logits, 3)
    for slot, (history, penalty) in answers.items():
        expected = RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([history], dtype=torch.long),
                                                            logits[slot][None].clone())[0]
        assert torch.equal(penalized[slot], expected), slot

    embeds = _embeds(model)
    with torch.inference_mode():  # greedy under the penalty, as generate() runs it on inputs_embeds
        out = model.llm(inputs_embeds=embeds, use_cache=True)
        tokens: list[int] = []
        for _ in range(16):
            scores = RepetitionPenaltyLogitsProcessor(1.5)(torch.tensor([tokens], dtype=torch.long),
                                                           out.logits[:, -1].clone())
            tokens.append(int(scores[0].argmax()))
            out = model.llm(input_ids=torch.tensor([[tokens[-1]]]), cache=out.cache, use_cache=True)
    ours = list(generate_ids(model, embeds, SamplingParams(max_new_tokens=16, repetition_penalty=1.5), stop_ids=set()))
    assert ours == tokens


def test_top_k_of_one_is_greedy(model) -> None:  # type: ignore[no-untyped-def]
    greedy = list(generate_ids(model, _embeds(model), SamplingParams(max_new_tokens=8), stop_ids=set()))
    one = SamplingParams(max_new_tokens=8, temperature=3.0, top_k=1, seed=3)
    assert list(generate_ids(model, _embeds(model), one, stop_ids=set())) == greedy


def test_the_demo_model_answers_in_words(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from models.model import load_longvu
    from models.tiny import CORPUS, write_demo_checkpoint

    demo = load_longvu(str(write_demo_checkpoint(tmp_path)))
    embeds = build_inputs(demo, synthetic_encoded(demo, 4), "What happens?").inputs_embeds
    answer = "".join(generate_text(demo, embeds, demo.generation.params(40)))
    words = answer.split()
    assert len(words) >= 8 and len(set(words)) >= 6, answer  # words, and not one over and over
    assert set(words) <= {w for line in CORPUS for w in re.findall(r"[A-Za-z]+", line)}, answer
