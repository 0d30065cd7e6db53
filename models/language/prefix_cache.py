"""Prompts kept on the device, so that questions about one video skip prefilling the video
(what vLLM's automatic prefix caching does, for our contiguous KV slots).

Questions about one video share their prompt up to the question: the chat template's
opening and the video's tokens, thousands of positions. Each entry holds one prompt's
input embeddings and every layer's keys and values for them. A new prompt is compared
with each entry on the device: the longest common prefix of their embeddings, exactly.
The best entry's keys and values for that prefix are copied into the question's slot, and
only the rest of the prompt is prefilled, attending to them as a chunked prompt's
continuation does. A position's keys and values depend only on the embeddings up to it, so
they are the ones a full prefill computes. Only a prefix of at least half the prompt is
taken. An answered prompt is stored once prefilled: in the entry it took its prefix from
(the same video: the entry keeps that prefix), else in the least recently stored one.
"""

from __future__ import annotations

import torch

from models.language.kv_cache import SlotCache


class PrefixCache:
    def __init__(self, entries: int, like: SlotCache, length: int, hidden: int, dtype: torch.dtype) -> None:
        shape = (entries, like.keys[0].shape[1], length, like.keys[0].shape[3])
        device = like.keys[0].device
        self.keys = [torch.zeros(shape, dtype=t.dtype, device=device) for t in like.keys]
        self.values = [torch.zeros(shape, dtype=t.dtype, device=device) for t in like.values]
        self.embeds = torch.zeros(entries, length, hidden, dtype=dtype, device=device)
        self.stored = [0] * entries  # positions each entry holds
        self._recent = list(range(entries))  # least recently stored first

    def match(self, embeds: torch.Tensor) -> tuple[int, int]:
        """(entry, positions): the entry sharing the longest prefix with the prompt `embeds`
        [L, H], and how long, at most L - 1 (the last position is prefilled for its logits);
        (-1, 0) when none shares at least half the prompt. A shorter prefix (the template's
        opening before another video) is not worth taking: the rest of the prompt would
        prefill as a continuation, through masked attention over the slot, which is slower
        than one causal pass over the whole prompt."""
        best, need = (-1, 0), (embeds.shape[0] + 1) // 2
        for entry, stored in enumerate(self.stored):
            floor = max(need, best[1] + 1)
            n = min(stored, embeds.shape[0] - 1)
            if n < floor:
                continue
            differs = (self.embeds[entry, :n] != embeds[:n].to(self.embeds.device)).any(dim=-1)
            common = int(torch.where(differs.any(), differs.int().argmax(), n))  # one wait on the device
            if common >= floor:
                best = (entry, common)
        return best

    def load(self, entry: int, positions: int, cache: SlotCache, slot: int) -> None:
        """Copy the entry's first `positions` keys and values into `slot`."""
        for stored, slots in self._beside(cache):
            slots[slot, :, :positions].copy_(stored[entry, :, :positions])

    def store(self, embeds: torch.Tensor, cache: SlotCache, slot: int, shared: tuple[int, int]) -> None:
        """Keep the prompt `embeds` whose keys and values `slot` holds. `shared`: what `match`
        found for it; the entry it shared half of itself with is this prompt's (the same
        video), else the least recently stored one is taken."""
        n = embeds.shape[0]
        if n > self.embeds.shape[1]:
            return
        entry = shared[0] if shared[0] >= 0 else self._recent[0]
        for stored, slots in self._beside(cache):
            stored[entry, :, :n].copy_(slots[slot, :, :n])
        self.embeds[entry, :n].copy_(embeds)
        self.stored[entry] = n
        self._recent.remove(entry)
        self._recent.append(entry)

    def _beside(self, cache: SlotCache) -> zip[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's keys, then values: ours beside the slot cache's."""
        return zip((*self.keys, *self.values), (*cache.keys, *cache.values), strict=True)
