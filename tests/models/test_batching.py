"""Continuous batching over the static slot cache, against one-prompt-at-a-time generation."""

from __future__ import annotations

import pytest
import torch

from models.batching import ContinuousBatch, Emitted, Sequence, buckets, windows
from models.build import build_inputs
from models.generate import generate_ids
from models.sampling import SamplingParams
from tests.models.synthetic import synthetic_encoded

QUESTIONS = ((2, "Describe it."), (3, "What is the person holding in the left hand?"), (1, "Why?"), (2, "Who?"))


@pytest.fixture(scope="module")
def prompts(model) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    return [build_inputs(model, synthetic_encoded(model, n), q).inputs_embeds[0] for n, q in QUESTIONS]


def alone(model, prompt: torch.Tensor, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    return list(generate_ids(model, prompt[None], SamplingParams(max_new_tokens=n), stop_ids=set()))


def collect(out: dict[int, list[int]], emitted: list[Emitted | None], ids: dict[int, int]) -> None:
    for e in emitted:
        if e is not None and e.token is not None:
            out[ids[id(e.seq)]].append(e.token)


def test_buckets_cover_every_count() -> None:
    assert buckets(1) == [1] and buckets(8) == [1, 2, 4, 8] and buckets(6) == [1, 2, 4, 6]
    assert windows(2500, 1024) == [1024, 2048, 2500] and windows(1024, 1024) == [1024]


def test_joining_mid_decode_and_leaving_keeps_every_answer(model, prompts) -> None:  # type: ignore[no-untyped-def]
    """Prompts join one by one while others decode, in chunks smaller than a prompt;
    sequences leave at different times, so slots are moved; decode windows grow as the
    answers do; each answer equals its own."""
    lengths = [9, 4, 12, 6]
    expected = [alone(model, p, n) for p, n in zip(prompts, lengths, strict=True)]
    batch = ContinuousBatch(model, slots=3, length=max(p.shape[0] for p in prompts) + 13, prefill_chunk=61,
                            window_block=100)
    seqs = [Sequence(p, SamplingParams(max_new_tokens=n), frozenset()) for p, n in zip(prompts, lengths, strict=True)]
    ids = {id(s): i for i, s in enumerate(seqs)}
    got: dict[int, list[int]] = {i: [] for i in range(len(seqs))}
    waiting = list(seqs)
    rounds = 0
    while waiting or batch.decoding or batch.prefilling:
        if waiting and batch.has_room:
            batch.start(waiting.pop(0))
        collect(got, [batch.prefill()], ids)
        collect(got, batch.decode(), ids)
        rounds += 1
        assert rounds < 500
    assert [got[i] for i in range(len(seqs))] == expected


def test_a_released_sequence_leaves_the_others_intact(model, prompts) -> None:  # type: ignore[no-untyped-def]
    batch = ContinuousBatch(model, slots=4, length=max(p.shape[0] for p in prompts) + 12, prefill_chunk=1000)
    seqs = [Sequence(p, SamplingParams(max_new_tokens=8), frozenset()) for p in prompts[:3]]
    ids = {id(s): i for i, s in enumerate(seqs)}
    got: dict[int, list[int]] = {i: [] for i in range(3)}
    for seq in seqs:
        batch.start(seq)
        collect(got, [batch.prefill()], ids)
    collect(got, batch.decode(), ids)
    batch.release(seqs[0])  # cancelled: the last slot moves into its place
    assert seqs[2].slot == 0 and seqs[0].slot == -1
    while batch.decoding:
        collect(got, batch.decode(), ids)
    assert got[1] == alone(model, prompts[1], 8) and got[2] == alone(model, prompts[2], 8)
    assert got[0] == alone(model, prompts[0], 8)[:2]


def test_stop_token_and_capacity(model, prompts) -> None:  # type: ignore[no-untyped-def]
    free = alone(model, prompts[0], 6)
    batch = ContinuousBatch(model, slots=1, length=prompts[0].shape[0] + 7)
    seq = Sequence(prompts[0], SamplingParams(max_new_tokens=6), frozenset({free[2]}))
    batch.start(seq)
    tokens = [batch.prefill()]
    while batch.decoding:
        tokens.extend(batch.decode())
    assert [e.token for e in tokens] == [*free[: free.index(free[2])], None] and tokens[-1].finished
    with pytest.raises(ValueError, match="cache holds"):
        batch.start(Sequence(prompts[0], SamplingParams(max_new_tokens=7), frozenset()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_decoding_equals_eager(tiny_checkpoint, prompts) -> None:  # type: ignore[no-untyped-def]
    from models.model import load_longvu

    gpu = load_longvu(str(tiny_checkpoint), device="cuda", dtype=torch.float32)
    answers = []
    for graphs in (False, True):
        batch = ContinuousBatch(gpu, slots=4, length=max(p.shape[0] for p in prompts) + 20, cuda_graphs=graphs,
                                window_block=256)
        assert batch.graphs == graphs
        assert batch.graph_shapes()["eager"] == 0
        seqs = [Sequence(p, SamplingParams(max_new_tokens=16), frozenset()) for p in prompts]
        ids = {id(s): i for i, s in enumerate(seqs)}
        got: dict[int, list[int]] = {i: [] for i in range(len(seqs))}
        for seq in seqs:
            batch.start(seq)
            while batch.prefilling is not None:
                collect(got, [batch.prefill()], ids)
        while batch.decoding:
            collect(got, batch.decode(), ids)
        answers.append(got)
    assert answers[0] == answers[1]


def test_a_decode_shape_without_a_graph_runs_eagerly() -> None:
    """Per shape: what failed to capture (here: never captured) runs the eager forward; the
    captured shapes would replay."""
    from models.batching import DecodeGraphs

    calls: list[tuple[int, int]] = []
    graphs = DecodeGraphs(lambda rows, window: calls.append((rows, window)) or torch.zeros(rows, 3))
    graphs.eager.append((2, 1024))
    assert graphs.run(2, 1024).shape == (2, 3) and calls == [(2, 1024)]
