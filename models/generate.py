"""Token-by-token generation from prepared embeddings (SPEC step 9: greedy by default)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from models.model import LongVU
from models.prompt import stop_token_ids


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


@torch.inference_mode()
def generate_ids(
    model: LongVU,
    inputs_embeds: torch.Tensor,
    params: SamplingParams,
    cancelled: Callable[[], bool] = lambda: False,
    stop_ids: set[int] | None = None,
) -> Iterator[int]:
    """Yield new token ids until a stop token, `max_new_tokens`, or `cancelled()`."""
    if stop_ids is None:
        stop_ids = set() if params.ignore_eos else stop_token_ids(model.tokenizer)
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=model.device).manual_seed(params.seed)
    out = model.llm(inputs_embeds=inputs_embeds.to(model.device), use_cache=True, logits_to_keep=1)
    for _ in range(params.max_new_tokens):
        if cancelled():
            return
        token = sample(out.logits[0, -1], params, generator)
        if token in stop_ids:
            return
        yield token
        step = torch.tensor([[token]], device=model.device)
        out = model.llm(input_ids=step, past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1)


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
