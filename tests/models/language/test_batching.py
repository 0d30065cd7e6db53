"""Continuous batching over the static slot cache, against one-prompt-at-a-time generation."""

from __future__ import annotations

import pytest
import torch

from models.build import build_inputs
from models.language.batching import ContinuousBatch, Emitted, Sequence, buckets, windows
from models.language.generate import generate_ids
from models.language.sampling import SamplingParams
from models.language.yes_no import YesNo
from tests.models.synthetic import synthetic_encoded

QUESTIONS = ((2, "Describe it."), (3, "What is the person holding in the left hand?"), (1, "Why?"), (2, "Who?"))


@pytest.fixture(scope="module")
def prompts(model) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    return [build_inputs(model, synthetic_encoded(model, n), q).inputs_embeds[0] for n, q in QUESTIONS]


def alone(model, prompt: torch.Tensor, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    return list(generate_ids(model, prompt[None], SamplingParams(max_new_tokens=n), stop_ids=set()))


def collect(out: dict[int, list[int]], emitted: list[Emitted], ids: dict[int, int]) -> None:
    for e in emitted:
        if e.token is not None:
            out[ids[id(e.seq)]].append(e.token)


def run_all(batch: ContinuousBatch, seqs: list[Sequence], join: bool = False) -> tuple[list[list[int]], int]:
    """Every sequence to its end; with `join` one joins per round while others decode
    (as questions arrive), else all start at once. Returns the answers and the rounds."""
    ids = {id(s): i for i, s in enumerate(seqs)}
    got: dict[int, list[int]] = {i: [] for i in range(len(seqs))}
    waiting, rounds = list(seqs), 0
    while waiting or batch.decoding or batch.prefilling:
        while waiting and batch.has_room and (not join or not rounds or batch.decoding):
            batch.start(waiting.pop(0))
            if join:
                break
        collect(got, batch.prefill(), ids)
        collect(got, batch.decode(), ids)
        rounds += 1
        assert rounds < 500
    return [got[i] for i in range(len(seqs))], rounds


def test_buckets_cover_every_count() -> None:
    assert buckets(1) == [1] and buckets(8) == [1, 2, 4, 8] and buckets(6) == [1, 2, 4, 6]
    assert windows(2500, 1024) == [1024, 2048, 2500] and windows(1024, 1024) == [1024]


def test_joining_mid_decode_and_leaving_keeps_every_answer(model, prompts) -> None:  # type: ignore[no-untyped-def]
    """Prompts join one by one while others decode, cut into passes smaller than a prompt;
    sequences leave at different times, so slots are moved; decode windows grow as the
    answers do; each answer equals its own."""
    lengths = [9, 4, 12, 6]
    expected = [alone(model, p, n) for p, n in zip(prompts, lengths, strict=True)]
    batch = ContinuousBatch(model, slots=3, length=max(p.shape[0] for p in prompts) + 13, prefill_tokens=61,
                            window_block=100)
    seqs = [Sequence(p, SamplingParams(max_new_tokens=n), frozenset()) for p, n in zip(prompts, lengths, strict=True)]
    assert run_all(batch, seqs, join=True)[0] == expected


@pytest.mark.parametrize("prefill_tokens", [8192, 150, 61, 7])
def test_prompts_packed_in_one_pass_keep_their_answers(model, prompts, prefill_tokens: int) -> None:  # type: ignore[no-untyped-def]
    """All four prompts wait at once: one packed pass when they fit, else several, the last
    prompt of a pass cut while others decode; greedy answers equal the ones given alone."""
    lengths = [7, 5, 9, 6]
    expected = [alone(model, p, n) for p, n in zip(prompts, lengths, strict=True)]
    batch = ContinuousBatch(model, slots=4, length=max(p.shape[0] for p in prompts) + 10,
                            prefill_tokens=prefill_tokens, window_block=64)
    seqs = [Sequence(p, SamplingParams(max_new_tokens=n), frozenset()) for p, n in zip(prompts, lengths, strict=True)]
    answers, rounds = run_all(batch, seqs)
    assert answers == expected
    if prefill_tokens >= sum(p.shape[0] for p in prompts):
        assert rounds == max(lengths) - 1  # one pass gave every first token, each round one more


def test_a_pass_is_cut_only_while_answers_decode(model, prompts) -> None:  # type: ignore[no-untyped-def]
    total = [int(p.shape[0]) for p in prompts]
    batch = ContinuousBatch(model, slots=4, length=max(total) + 10, prefill_tokens=min(total) - 1)
    seqs = [Sequence(p, SamplingParams(max_new_tokens=5), frozenset()) for p in prompts]
    for seq in seqs:
        batch.start(seq)
    first = batch._plan()  # nothing decodes: the first prompt whole, however long; no other fits whole
    assert [(p.slot, p.start, p.end) for p in first] == [(0, 0, total[0])]
    batch.prefill()
    second = batch._plan()  # one decodes now: at most prefill_tokens positions, the prompt cut
    assert [(p.slot, p.start, p.end) for p in second] == [(1, 0, min(total) - 1)]
    batch.prefill()
    assert seqs[1].filled == min(total) - 1 and batch.prefilling == seqs[1:]
    batch.release(seqs[2])  # a waiting prompt leaves: the ones behind it move down
    assert [s.slot for s in batch.prefilling] == [1, 2] and seqs[2].slot == -1


def test_a_released_sequence_leaves_the_others_intact(model, prompts) -> None:  # type: ignore[no-untyped-def]
    batch = ContinuousBatch(model, slots=4, length=max(p.shape[0] for p in prompts) + 12)
    seqs = [Sequence(p, SamplingParams(max_new_tokens=8), frozenset()) for p in prompts[:3]]
    ids = {id(s): i for i, s in enumerate(seqs)}
    got: dict[int, list[int]] = {i: [] for i in range(3)}
    for seq in seqs:
        batch.start(seq)
        collect(got, batch.prefill(), ids)
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
    tokens = batch.prefill()
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
        collect(got, batch.prefill(), ids)
        while batch.decoding:
            collect(got, batch.decode(), ids)
        answers.append(got)
    assert answers[0] == answers[1]


def test_a_decode_shape_without_a_graph_runs_eagerly() -> None:
    """Per shape: what failed to capture (here: never captured) runs the eager forward; the
    captured shapes would replay."""
    from models.language.batching import DecodeGraphs

    calls: list[tuple[int, int]] = []
    graphs = DecodeGraphs(lambda rows, window: calls.append((rows, window)) or torch.zeros(rows, 3))
    graphs.eager.append((2, 1024))
    assert graphs.run(2, 1024).shape == (2, 3) and calls == [(2, 1024)] and graphs.fallbacks == 1


def test_a_row_whose_logits_are_not_finite_ends_alone(model, prompts) -> None:  # type: ignore[no-untyped-def]
    """A row's cached keys turned NaN mid-answer (as an overflow leaves them): that row ends
    with an error naming the dtype at the next step; the other rows keep their answers."""
    batch = ContinuousBatch(model, slots=3, length=max(p.shape[0] for p in prompts) + 10)
    seqs = [Sequence(p, SamplingParams(max_new_tokens=6), frozenset()) for p in prompts[:3]]
    ids = {id(s): i for i, s in enumerate(seqs)}
    got: dict[int, list[int]] = {i: [] for i in range(3)}
    for seq in seqs:
        batch.start(seq)
    collect(got, batch.prefill(), ids)
    batch.cache.keys[0][seqs[1].slot, :, 0] = float("nan")
    step = batch.decode()
    collect(got, step, ids)
    ended = [e for e in step if e.error is not None]
    assert [e.seq for e in ended] == [seqs[1]] and ended[0].finished and ended[0].token is None
    assert "overflowed float32" in ended[0].error and seqs[1].slot == -1
    while batch.decoding:
        collect(got, batch.decode(), ids)
    assert got[0] == alone(model, prompts[0], 6) and got[2] == alone(model, prompts[2], 6)
    assert got[1] == alone(model, prompts[1], 6)[:1]


@torch.inference_mode()
def test_scoring_rows_packed_beside_answers_equal_the_llm_alone(model, prompts) -> None:  # type: ignore[no-untyped-def]
    """Two windows to score and two answers in one packed pass: each score is the softmax
    over the yes and no tokens of the LLM's own forward on that prompt alone; the scoring
    rows leave after the pass and the answers go on unchanged."""
    yes_no = YesNo.from_tokenizer(model.tokenizer)
    expected_scores = []
    for prompt in prompts[:2]:
        logits = model.llm(inputs_embeds=prompt[None]).logits[0, -1]
        expected_scores.append(float(torch.softmax(logits[[yes_no.yes, yes_no.no]].float(), dim=-1)[0]))
    expected_answers = [alone(model, p, 5) for p in prompts[2:]]

    batch = ContinuousBatch(model, slots=4, length=2048, prefill_tokens=8192)
    scoring = [Sequence(p, SamplingParams(max_new_tokens=1), frozenset(), scorer=yes_no) for p in prompts[:2]]
    answering = [Sequence(p, SamplingParams(max_new_tokens=5), frozenset()) for p in prompts[2:]]
    for seq in [answering[0], *scoring, answering[1]]:  # scores between answers: slots move as they leave
        batch.start(seq)
    emitted = batch.prefill()
    scores = {id(e.seq): e.score for e in emitted if e.score is not None}
    assert [scores[id(s)] for s in scoring] == pytest.approx(expected_scores, abs=1e-5)
    assert all(e.finished and e.token is None for e in emitted if e.score is not None)
    assert batch.decoding == answering and [s.slot for s in answering] == [0, 1]
    got: dict[int, list[int]] = {0: [], 1: []}
    collect(got, emitted, {id(s): i for i, s in enumerate(answering)})
    while batch.decoding:
        collect(got, batch.decode(), {id(s): i for i, s in enumerate(answering)})
    assert [got[0], got[1]] == expected_answers
