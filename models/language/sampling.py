"""What a question asks of the sampler, and the sampler (SPEC step 9: greedy by default).

The checkpoint's `generation_config.json` fills what a question leaves open, the way
transformers' `generate` (which the reference calls) merges it in: its repetition penalty
applies to greedy answers too, its top-k and top-p to sampled ones, its end-of-sequence ids
stop the answer. What a question says wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: no cut
    repetition_penalty: float = 1.0  # over the answer's own tokens, as generate() without input ids
    seed: int | None = None
    ignore_eos: bool = False  # generate max_new_tokens whatever comes (benchmarks)


@dataclass(frozen=True)
class GenerationDefaults:
    """A checkpoint's generation_config.json; transformers' own defaults where it is silent."""

    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0
    eos_token_ids: tuple[int, ...] = ()

    @classmethod
    def from_dir(cls, directory: Path) -> GenerationDefaults:
        path = directory / "generation_config.json"
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        eos = raw.get("eos_token_id")
        return cls(
            top_p=float(raw.get("top_p") or 1.0),
            top_k=int(raw.get("top_k") if raw.get("top_k") is not None else 50),
            repetition_penalty=float(raw.get("repetition_penalty") or 1.0),
            eos_token_ids=tuple(eos if isinstance(eos, list) else [] if eos is None else [eos]),
        )

    def params(self, max_new_tokens: int, temperature: float = 0.0, top_p: float | None = None,
               top_k: int | None = None, repetition_penalty: float | None = None, seed: int | None = None,
               ignore_eos: bool = False) -> SamplingParams:
        """A question's sampling: its own fields, the checkpoint's for those it leaves open."""
        return SamplingParams(
            max_new_tokens=max_new_tokens, temperature=temperature,
            top_p=self.top_p if top_p is None else top_p, top_k=self.top_k if top_k is None else top_k,
            repetition_penalty=self.repetition_penalty if repetition_penalty is None else repetition_penalty,
            seed=seed, ignore_eos=ignore_eos,
        )


def choose(logits: torch.Tensor, params: list[SamplingParams],
           generators: list[torch.Generator | None]) -> tuple[list[int], list[bool]]:
    """One token for every row of [n, V] logits, and whether the row's logits were finite:
    greedy rows take the argmax, sampled ones a draw from their temperature, top-k and top-p
    distribution. All rows are drawn at once on the device, and both lists come back in
    one host transfer.

    A draw is the exponential race (argmax of p / E with E ~ Exp(1) a token), which picks
    token i with probability p_i, as `multinomial` does; a seeded row draws its noise from
    its own generator, the others share the default one."""
    greedy = logits.argmax(-1)
    finite = torch.isfinite(logits).all(-1)
    sampled = [row for row, p in enumerate(params) if p.temperature > 0.0]
    tokens = greedy
    if sampled:
        tokens = greedy.clone()
        tokens[sampled] = _draw(logits[sampled], [params[r] for r in sampled], [generators[r] for r in sampled])
    both = torch.stack([tokens, finite.long()]).tolist()
    return both[0], [bool(f) for f in both[1]]


def _draw(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]) -> torch.Tensor:
    device, vocab = logits.device, logits.shape[-1]
    temperature = torch.tensor([p.temperature for p in params], device=device)[:, None]
    scaled = logits.float() / temperature
    top_k = torch.tensor([p.top_k if 0 < p.top_k < vocab else vocab for p in params], device=device)
    ordered = scaled.sort(dim=-1, descending=True).values
    kth = ordered.gather(-1, (top_k - 1)[:, None])
    scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    top_p = torch.tensor([p.top_p for p in params], device=device)[:, None]
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # Keep the smallest prefix whose mass reaches top_p (the first token always).
    outside = (sorted_probs.cumsum(-1) - sorted_probs >= top_p) & (top_p < 1.0)
    probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs.masked_fill(outside, 0.0))
    noise = torch.empty_like(probs)
    shared = [row for row, g in enumerate(generators) if g is None]
    if shared:
        noise[shared] = torch.empty(len(shared), vocab, device=device).exponential_()
    for row, generator in enumerate(generators):
        if generator is not None:
            noise[row].exponential_(generator=generator)
    return (probs / noise).argmax(-1)


def generator_for(params: SamplingParams, device: torch.device) -> torch.Generator | None:
    return torch.Generator(device=device).manual_seed(params.seed) if params.seed is not None else None
