"""Token-by-token generation from prepared embeddings (SPEC step 9: greedy by default)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Set as AbstractSet
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from models.model import LongVU


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False  # generate max_new_tokens whatever comes (benchmarks)


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    if params.temperature <= 0.0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always).
        outside = sorted_probs.cumsum(-1) - sorted_probs >= params.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


def default_stop_ids(model: LongVU, params: SamplingParams) -> AbstractSet[int]:
    return frozenset() if params.ignore_eos else model.stop_ids


class BatchDecoder:
    """Decodes several prompts together, one token per row per `step`.

    The prompts' embeddings differ in length: they are left-padded, with an attention
    mask and position ids that skip the padding. A single prompt takes the plain path
    (no mask), which is what `generate_ids` uses. A finished row is fed a dummy token
    until the whole batch is done.
    """

    @torch.inference_mode()
    def __init__(self, model: LongVU, embeds: list[torch.Tensor], params: list[SamplingParams],
                 stop_ids: list[AbstractSet[int]]) -> None:
        self.model, self.params, self.stop_ids = model, params, stop_ids
        self.generators = [
            torch.Generator(device=model.device).manual_seed(p.seed) if p.seed is not None else None for p in params
        ]
        self.produced = [0] * len(embeds)
        self.finished = [False] * len(embeds)
        self.mask: torch.Tensor | None = None
        self.next_position: torch.Tensor | None = None
        if len(embeds) == 1:
            out = model.llm(inputs_embeds=embeds[0][None].to(model.device), use_cache=True, logits_to_keep=1)
        else:
            longest = max(e.shape[0] for e in embeds)
            padded = embeds[0].new_zeros(len(embeds), longest, embeds[0].shape[-1], device=model.device)
            self.mask = torch.zeros(len(embeds), longest, dtype=torch.long, device=model.device)
            for row, e in enumerate(embeds):
                padded[row, longest - e.shape[0] :] = e
                self.mask[row, longest - e.shape[0] :] = 1
            positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
            out = model.llm(inputs_embeds=padded, attention_mask=self.mask, position_ids=positions,
                            use_cache=True, logits_to_keep=1)
            self.next_position = positions[:, -1:] + 1
        self.past, self.logits = out.past_key_values, out.logits[:, -1]

    def _spent(self, row: int) -> bool:
        return self.finished[row] or self.produced[row] >= self.params[row].max_new_tokens

    @property
    def done(self) -> bool:
        return all(self._spent(row) for row in range(len(self.params)))

    @torch.inference_mode()
    def step(self, cancelled: list[bool]) -> list[int | None]:
        """The next token of every row; None for a row that has finished (now or before)."""
        tokens: list[int | None] = []
        for row, params in enumerate(self.params):
            if cancelled[row] or self._spent(row):
                self.finished[row] = True
                tokens.append(None)
                continue
            token = sample(self.logits[row], params, self.generators[row])
            if token in self.stop_ids[row]:
                self.finished[row] = True
                tokens.append(None)
                continue
            self.produced[row] += 1
            tokens.append(token)
        if self.done:
            return tokens  # no row needs another forward pass
        feed = torch.tensor([[t if t is not None else 0] for t in tokens], device=self.model.device)
        if self.mask is None:
            out = self.model.llm(input_ids=feed, past_key_values=self.past, use_cache=True, logits_to_keep=1)
        else:
            assert self.next_position is not None
            self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
            out = self.model.llm(input_ids=feed, attention_mask=self.mask, position_ids=self.next_position,
                                 past_key_values=self.past, use_cache=True, logits_to_keep=1)
            self.next_position = self.next_position + 1
        self.past, self.logits = out.past_key_values, out.logits[:, -1]
        return tokens


def generate_ids(
    model: LongVU,
    inputs_embeds: torch.Tensor,
    params: SamplingParams,
    cancelled: Callable[[], bool] = lambda: False,
    stop_ids: AbstractSet[int] | None = None,
) -> Iterator[int]:
    """Yield new token ids until a stop token, `max_new_tokens`, or `cancelled()`."""
    stop = default_stop_ids(model, params) if stop_ids is None else stop_ids
    decoder = BatchDecoder(model, [inputs_embeds[0]], [params], [stop])
    while True:
        (token,) = decoder.step([cancelled()])
        if token is None:
            return
        yield token


class Detokenizer:
    """Turns a growing list of ids into text deltas, holding back split UTF-8 characters."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        delta, self.text = text[len(self.text) :], text
        return delta

    def flush(self) -> str:
        """Whatever was held back, once no more tokens will come."""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        delta, self.text = text[len(self.text) :], text
        return delta


def generate_text(
    model: LongVU,
    inputs_embeds: torch.Tensor,
    params: SamplingParams,
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[str]:
    detok = Detokenizer(model.tokenizer)
    for token in generate_ids(model, inputs_embeds, params, cancelled):
        delta = detok.push(token)
        if delta:
            yield delta
    tail = detok.flush()
    if tail:
        yield tail
