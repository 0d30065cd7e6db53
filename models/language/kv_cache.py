"""A static KV cache with one slot per running question (gpt-fast style).

Every layer owns two preallocated tensors [slots, kv_heads, length, head_dim]; a question
keeps its slot from prefill to its last token, so no step allocates or concatenates.
Before each forward pass the caller says where the new keys go (`plan_prefill` or
`plan_decode`); the attention layers then call `update`, the one method transformers
asks of a cache when it is given ready masks. A prefill pass packs pieces of several
prompts, each written to its own slot; its plan (`PackedPrefill`) is defined here, and the
attention layers (`models.language.attention`) read it.

The last position of every slot is scratch: padding rows of a decode batch write there,
so a bucketed decode never touches a slot's real tokens. A decode step reads only a window
of positions that holds every row's tokens, not the whole slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Piece:
    """Positions [start, end) of the prompt in `slot`, at `offset` in the packed pass."""

    slot: int
    start: int
    end: int
    offset: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class PackedPrefill:
    pieces: list[Piece]
    cache: SlotCache

    @property
    def positions(self) -> torch.Tensor:
        return torch.cat([torch.arange(p.start, p.end) for p in self.pieces])

    @property
    def last_positions(self) -> torch.Tensor:
        """Where in the pass each piece ends (its logits give a finished prompt's first token)."""
        return torch.tensor([p.offset + p.length - 1 for p in self.pieces])

    def no_masks(self) -> dict[str, None]:
        """transformers' ready-made mask mapping: none, so it builds no dense mask."""
        return dict.fromkeys(("full_attention", "sliding_attention"))


class SlotCache:
    def __init__(self, layers: int, slots: int, kv_heads: int, length: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        shape = (slots, kv_heads, length, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.slots, self.length = slots, length
        self.rows = torch.arange(slots, device=device)
        self._prefill: PackedPrefill | None = None
        self._decode: tuple[int, torch.Tensor, int] | None = None

    @property
    def scratch(self) -> int:
        return self.length - 1

    @property
    def usable(self) -> int:
        """Positions a question may fill: all but the scratch one."""
        return self.length - 1

    def plan_prefill(self, packed: PackedPrefill) -> None:
        """The next pass writes each piece's positions into its slot; attention reads them
        from there (`models.language.attention`)."""
        self._prefill, self._decode = packed, None

    def plan_decode(self, rows: int, positions: torch.Tensor, window: int) -> None:
        """The next pass writes one position per slot 0..rows-1 and attends to the first
        `window` positions of each (enough to hold every row's tokens)."""
        self._prefill, self._decode = None, (rows, positions, window)

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: object,
               **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self._prefill is not None:
            for p in self._prefill.pieces:
                keys[p.slot, :, p.start : p.end] = key[0, :, p.offset : p.offset + p.length]
                values[p.slot, :, p.start : p.end] = value[0, :, p.offset : p.offset + p.length]
            return key, value
        assert self._decode is not None, "plan the pass before running it"
        rows, positions, window = self._decode
        keys[self.rows[:rows], :, positions] = key[:, :, 0]
        values[self.rows[:rows], :, positions] = value[:, :, 0]
        return keys[:rows, :, :window], values[:rows, :, :window]

    def clear(self, slot: int) -> None:
        for tensor in (*self.keys, *self.values):
            tensor[slot].zero_()

    def move(self, source: int, target: int, filled: int) -> None:
        """Copy a question's first `filled` positions to another slot (slots stay packed)."""
        for tensor in (*self.keys, *self.values):
            tensor[target, :, :filled].copy_(tensor[source, :, :filled])
