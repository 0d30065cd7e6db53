"""How many answers fit in a device's memory: the KV slots, by arithmetic.

An answer holds one KV slot from its prefill to its last token: every layer's keys and
values for the whole slot length (the prompt's most positions, the most new tokens, one
scratch position), allocated at start-up. What the slots may take is the part of the card
left by the memory fraction, the loaded weights, and the working set of the work the
engine runs one piece at a time: a packed prefill pass and an ingest step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PretrainedConfig

GIB = 1 << 30
# A packed prefill pass keeps, per position, about this many hidden-size vectors alive at
# once (the residual, the normed input, q/k/v, attention's output) and this many
# intermediate-size ones (the MLP's gate, up and their product).
PREFILL_HIDDEN_VECTORS = 6
PREFILL_INTERMEDIATE_VECTORS = 3
INGEST_STEP_BYTES = 2 * GIB  # a tower step of 64 frames at 720p in float16, with the staging blocks


class NotEnoughMemory(RuntimeError):
    pass


def kv_bytes_per_position(llm: PretrainedConfig, dtype: torch.dtype) -> int:
    head_dim = getattr(llm, "head_dim", None) or llm.hidden_size // llm.num_attention_heads
    return 2 * llm.num_hidden_layers * llm.num_key_value_heads * head_dim * dtype.itemsize


def slot_positions(max_prompt: int, max_new_tokens: int) -> int:
    """A slot's length, as `server.decoding.local` allocates it."""
    return max_prompt + max_new_tokens + 1


def prefill_working_bytes(llm: PretrainedConfig, prefill_tokens: int, dtype: torch.dtype) -> int:
    per_position = PREFILL_HIDDEN_VECTORS * llm.hidden_size + PREFILL_INTERMEDIATE_VECTORS * llm.intermediate_size
    return prefill_tokens * per_position * dtype.itemsize


@dataclass(frozen=True)
class Sizing:
    card_bytes: int
    fraction: float
    held_bytes: int  # what is loaded: weights, towers, connector
    working_bytes: int  # a prefill pass and an ingest step
    slot_bytes: int  # one full-length answer's keys and values
    prefix_bytes: int = 0  # the prefix cache's entries: prompts' embeddings, keys and values

    @property
    def budget_bytes(self) -> int:
        return int(self.card_bytes * self.fraction) - self.held_bytes - self.working_bytes - self.prefix_bytes

    @property
    def slots(self) -> int:
        return max(0, self.budget_bytes // self.slot_bytes)

    def explain(self) -> str:
        return (f"{self.fraction:g} of {self.card_bytes / GIB:.1f} GiB = {self.card_bytes * self.fraction / GIB:.2f} "
                f"GiB; minus {self.held_bytes / GIB:.2f} GiB loaded, {self.working_bytes / GIB:.2f} GiB of working "
                f"set (a prefill pass, an ingest step) and {self.prefix_bytes / GIB:.2f} GiB of prefix cache leaves "
                f"{max(0, self.budget_bytes) / GIB:.2f} GiB; a full-length answer's KV slot takes "
                f"{self.slot_bytes / GIB:.3f} GiB: {self.slots} answers fit")

    def check(self) -> None:
        """Refuse to start, saying why, when not even one full-length answer fits."""
        if self.slots < 1:
            raise NotEnoughMemory(f"not even one full-length answer fits on this device: {self.explain()}. "
                                  "Set LONGVU_LLM_WEIGHTS=int8 (half the LLM's bytes), lower LONGVU_MAX_NEW_TOKENS, "
                                  "LONGVU_PREFILL_TOKENS or LONGVU_PREFIX_CACHE, raise LONGVU_GPU_MEMORY_FRACTION, "
                                  "or use a larger card")


def prefix_entry_bytes(llm: PretrainedConfig, dtype: torch.dtype, max_prompt: int) -> int:
    """One prefix cache entry (`models.language.prefix_cache`): a prompt's embeddings, keys and values."""
    return max_prompt * (kv_bytes_per_position(llm, dtype) + llm.hidden_size * dtype.itemsize)


def sizing(llm: PretrainedConfig, dtype: torch.dtype, card_bytes: int, fraction: float, held_bytes: int,
           max_prompt: int, max_new_tokens: int, prefill_tokens: int, prefix_entries: int = 0) -> Sizing:
    slot = slot_positions(max_prompt, max_new_tokens) * kv_bytes_per_position(llm, dtype)
    working = prefill_working_bytes(llm, prefill_tokens, dtype) + INGEST_STEP_BYTES
    return Sizing(card_bytes, fraction, held_bytes, working, slot,
                  prefix_entries * prefix_entry_bytes(llm, dtype, max_prompt))
