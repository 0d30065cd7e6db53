"""The prefix cache: questions about a video asked lately skip prefilling the video, and
answer as if they had prefilled it."""

from __future__ import annotations

import pytest
import torch

from models.build import build_inputs
from models.language.batching import ContinuousBatch, Sequence
from models.language.kv_cache import SlotCache
from models.language.prefix_cache import PrefixCache
from models.language.sampling import SamplingParams
from models.language.yes_no import YesNo
from tests.models.language.test_batching import alone, run_all
from tests.models.synthetic import synthetic_encoded

TOKENS = 6


def prompt(model, frames: int, question: str) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return build_inputs(model, synthetic_encoded(model, frames), question).inputs_embeds[0]


def common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    differs = (a[:n] != b[:n]).any(dim=-1).nonzero()
    return int(differs[0]) if len(differs) else n


def answer(batch: ContinuousBatch, embeds: torch.Tensor) -> tuple[list[int], Sequence]:
    seq = Sequence(embeds, SamplingParams(max_new_tokens=TOKENS), frozenset())
    (tokens,), _ = run_all(batch, [seq])
    return tokens, seq


@pytest.fixture()
def batch(model) -> ContinuousBatch:  # type: ignore[no-untyped-def]
    return ContinuousBatch(model, slots=2, length=2048, prefix_entries=2, max_prompt=1024)


def test_a_second_question_about_a_video_prefills_only_the_question(model, batch) -> None:  # type: ignore[no-untyped-def]
    first, second = prompt(model, 3, "What is on the table?"), prompt(model, 3, "Who opens the door, and when?")
    shared = common_prefix(first, second)
    assert shared > len(second) // 2  # the template's opening and the video

    tokens, seq = answer(batch, first)
    assert seq.shared == (-1, 0) and tokens == alone(model, first, TOKENS)
    tokens, seq = answer(batch, second)
    assert seq.shared[1] == shared
    assert tokens == alone(model, second, TOKENS)


def test_the_same_prompt_again_prefills_its_last_position(model, batch) -> None:  # type: ignore[no-untyped-def]
    again = prompt(model, 2, "Describe it.")
    expected, _ = answer(batch, again)
    tokens, seq = answer(batch, again)
    assert seq.shared[1] == len(again) - 1 and tokens == expected


def test_other_videos_take_the_least_recently_used_entry(model, batch) -> None:  # type: ignore[no-untyped-def]
    videos = {n: prompt(model, n, "Why?") for n in (1, 2, 4)}
    assert 0 < common_prefix(videos[1], videos[2]) < len(videos[1]) // 2  # the template's opening
    for n in (1, 2, 4):  # three videos, two entries: the first is let go; the opening alone is not taken
        assert answer(batch, videos[n])[1].shared == (-1, 0)
    assert answer(batch, prompt(model, 2, "Where?"))[1].shared[1] > len(videos[2]) // 2
    assert answer(batch, prompt(model, 1, "Where?"))[1].shared == (-1, 0)


def test_windows_read_the_cache_but_are_not_kept(model, batch) -> None:  # type: ignore[no-untyped-def]
    video = prompt(model, 3, "Why?")
    answer(batch, video)
    stored = list(batch.prefixes.stored)
    window = Sequence(prompt(model, 3, "Is there a dog? Answer yes or no."), SamplingParams(max_new_tokens=1),
                      frozenset(), scorer=YesNo.from_tokenizer(model.tokenizer))
    batch.start(window)
    assert window.shared[1] > 0
    (emitted,) = batch.prefill()
    assert emitted.score is not None and batch.prefixes.stored == stored


def test_match_is_the_longest_common_prefix() -> None:
    cache = SlotCache(layers=2, slots=1, kv_heads=1, length=16, head_dim=4, dtype=torch.float32,
                      device=torch.device("cpu"))
    for t in (*cache.keys, *cache.values):
        t.normal_()
    prefixes = PrefixCache(2, cache, length=12, hidden=3, dtype=torch.float32)
    stored = torch.randn(10, 3)
    prefixes.store(stored, cache, slot=0, shared=(-1, 0))
    assert prefixes.match(torch.cat([stored[:5], torch.randn(4, 3)])) == (0, 5)
    assert prefixes.match(torch.cat([stored, torch.randn(3, 3)])) == (0, 10)
    assert prefixes.match(stored) == (0, 9)  # its last position is prefilled for its logits
    assert prefixes.match(torch.randn(10, 3)) == (-1, 0)
    assert prefixes.match(stored[:1]) == (-1, 0)
    assert prefixes.match(torch.cat([stored[:4], torch.randn(5, 3)])) == (-1, 0)  # under half of it
    prefixes.store(torch.randn(13, 3), cache, slot=0, shared=(-1, 0))  # longer than an entry: not kept
    assert prefixes.stored == [10, 0]
    target = SlotCache(layers=2, slots=2, kv_heads=1, length=16, head_dim=4, dtype=torch.float32,
                       device=torch.device("cpu"))
    prefixes.load(0, 7, target, slot=1)
    for theirs, ours in zip((*cache.keys, *cache.values), (*target.keys, *target.values), strict=True):
        assert torch.equal(ours[1, :, :7], theirs[0, :, :7]) and not ours[1, :, 7:].any()
