"""The batched sampler: greedy and sampled rows drawn together in one host transfer."""

from __future__ import annotations

import pytest
import torch

from models.language.sampling import SamplingParams, choose

GREEDY, HOT = SamplingParams(), SamplingParams(temperature=1.0)


def test_greedy_rows_take_the_argmax_and_flag_non_finite_rows() -> None:
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    logits[2, 7] = float("inf")
    logits[3, 1] = float("nan")
    tokens, finite = choose(logits, [GREEDY] * 4, [None] * 4)
    assert tokens[:2] == logits[:2].argmax(-1).tolist() and finite == [True, True, False, False]


def test_draws_follow_the_distribution() -> None:
    """Unseeded rows of the same logits, drawn at once: the token frequencies match softmax."""
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, -30.0])
    tokens, _ = choose(logits.repeat(20000, 1), [HOT] * 20000, [None] * 20000)
    freq = torch.bincount(torch.tensor(tokens), minlength=5).float() / 20000
    torch.testing.assert_close(freq, torch.softmax(logits, 0), atol=0.015, rtol=0)


@pytest.mark.parametrize(("params", "allowed"), [
    (SamplingParams(temperature=5.0, top_k=2), {0, 1}),
    (SamplingParams(temperature=1.0, top_p=0.5), {0}),  # the first token alone holds 62 % of the mass
    (SamplingParams(temperature=5.0, top_k=1, top_p=0.9), {0}),
])
def test_top_k_and_top_p_cut_each_row(params: SamplingParams, allowed: set[int]) -> None:
    logits = torch.tensor([[9.0, 8.5, 1.0, 0.5, 0.0]]).repeat(300, 1)
    rows = [params if i % 2 else HOT for i in range(300)]  # cut rows beside uncut ones
    tokens, _ = choose(logits, rows, [None] * 300)
    assert set(tokens[1::2]) <= allowed
    assert len(set(tokens[0::2])) > 1  # the uncut rows are not held to the cut


def test_a_seeded_row_repeats_whatever_its_neighbours() -> None:
    logits = torch.randn(3, 1000, generator=torch.Generator().manual_seed(1))
    seeded = SamplingParams(temperature=2.0, seed=11)

    def seeded_draws(neighbours: list[SamplingParams]) -> list[int]:  # the seeded row last
        rows = [*neighbours, seeded]
        gens = [None] * len(neighbours) + [torch.Generator().manual_seed(11)]
        return choose(logits[: len(rows)], rows, gens)[0]

    assert seeded_draws([GREEDY, HOT])[-1] == seeded_draws([HOT, HOT])[-1] == seeded_draws([GREEDY, GREEDY])[-1]
