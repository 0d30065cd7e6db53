"""Generation for one prompt at a time (tools, tests, benchmarks) and streaming detokenization.

The server batches many questions through `models.language.batching.ContinuousBatch`; this module
runs one prompt through the same class, so there is one decoding path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet

import torch
from tokenizers.decoders import DecodeStream
from transformers import PreTrainedTokenizerBase

from models.language.batching import ContinuousBatch, Sequence
from models.language.sampling import SamplingParams, generator_for
from models.model import LongVU


def default_stop_ids(model: LongVU, params: SamplingParams) -> AbstractSet[int]:
    return frozenset() if params.ignore_eos else model.stop_ids


def generate_ids(
    model: LongVU,
    inputs_embeds: torch.Tensor,
    params: SamplingParams,
    cancelled: Callable[[], bool] = lambda: False,
    stop_ids: AbstractSet[int] | None = None,
) -> Iterator[int]:
    """Yield new token ids until a stop token, `max_new_tokens`, or `cancelled()`."""
    stop = default_stop_ids(model, params) if stop_ids is None else stop_ids
    seq = Sequence(inputs_embeds[0], params, stop, generator_for(params, model.device))
    batch = ContinuousBatch(model, slots=1, length=seq.prompt_len + params.max_new_tokens + 1)
    batch.start(seq)
    (emitted,) = batch.prefill()  # nothing else runs: the prompt in one pass
    while True:
        if emitted.error is not None:
            raise FloatingPointError(emitted.error)
        if emitted.token is not None:
            yield emitted.token
        if emitted.finished or cancelled():
            return
        (emitted,) = batch.decode()


MAX_HELD = 16  # tokens held without text before they are let out as they are


class Detokenizer:
    """Token ids to text deltas with constant work per token; split UTF-8 characters are
    held back until they are whole. A model that keeps emitting bytes that never make a
    character (a loop on a lone lead byte) would hold the rest of its answer back: after
    MAX_HELD such tokens they come out with replacement characters, and decoding starts
    afresh, so the stream goes on."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.backend = tokenizer.backend_tokenizer
        self.stream = DecodeStream(skip_special_tokens=True)
        self.held: list[int] = []

    def push(self, token: int) -> str:
        text = self.stream.step(self.backend, token)
        if text is None:
            self.held.append(token)
            if len(self.held) < MAX_HELD:
                return ""
            self.stream = DecodeStream(skip_special_tokens=True)
            return self.flush()
        self.held.clear()
        return text

    def flush(self) -> str:
        """What is still held back once no more tokens will come (an incomplete character)."""
        text = self.tokenizer.decode(self.held, skip_special_tokens=True) if self.held else ""
        self.held.clear()
        return text


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
