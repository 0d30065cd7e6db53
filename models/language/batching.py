"""Continuous batching: questions join the running decode between steps and leave at once.

Slots stay packed: the decoding questions hold slots 0..n-1 and the questions waiting for
their prompts to be prefilled hold the next ones, first come first. A prefill pass packs
as many of those prompts as fit in `prefill_tokens` positions, in order, into one forward
(`models.language.attention`). With nothing decoding a prompt is never cut (the first one
goes whole however long); while answers decode, a first prompt longer than `prefill_tokens`
is cut and continues next pass, so a pass stalls them by at most `prefill_tokens` positions.
A decode step runs the first `rows` slots, `rows` the smallest bucket that covers n, and
attends to the first `window` positions, the smallest multiple of `window_block` that holds
the longest row: attention reads what the questions hold, not the cache's full length.
Padding rows write to the scratch position. On CUDA each (rows, window) step is a captured
graph: one launch per token for the whole model. A scoring sequence (`scorer` set: moments,
watches) leaves at the end of its prefill with its yes/no score instead of a first token.
With `prefix_entries`, a prompt that begins as a stored one (`models.language.prefix_cache`:
another question about the same video) takes those positions' keys and values and prefills
only the rest.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import torch

from models.language.kv_cache import PackedPrefill, Piece, SlotCache
from models.language.prefix_cache import PrefixCache
from models.language.sampling import SamplingParams, choose
from models.language.yes_no import YesNo
from models.model import LongVU

log = logging.getLogger("longvu.batching")


@dataclass(eq=False)
class Sequence:
    embeds: torch.Tensor  # [L, H] the prompt
    params: SamplingParams
    stop_ids: AbstractSet[int]
    generator: torch.Generator | None = None
    slot: int = -1
    filled: int = 0  # cache positions written
    produced: int = 0
    pending: int = 0  # the last token, fed at the next decode step
    scorer: YesNo | None = None  # a yes/no score from the prefill, no answer: it leaves after it
    shared: tuple[int, int] = (-1, 0)  # (prefix entry, positions) its prompt took from the prefix cache

    @property
    def prompt_len(self) -> int:
        return int(self.embeds.shape[0])


@dataclass
class Emitted:
    seq: Sequence
    token: int | None  # None: a stop token came, or an error
    finished: bool  # the sequence has left the batch
    error: str | None = None  # why the answer ended early (its logits were not finite)
    score: float | None = None  # a scoring sequence's yes/no score


def buckets(slots: int) -> list[int]:
    sizes = [1 << i for i in range(slots.bit_length()) if 1 << i < slots]
    return [*sizes, slots]


def windows(length: int, block: int) -> list[int]:
    return [*range(block, length, block), length]


def non_finite_message(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    hint = ("; LONGVU_DTYPE=bfloat16 avoids it (float32's range in half the bytes)"
            if dtype == torch.float16 else "")
    return f"the model's logits were not finite: its activations overflowed {name}{hint}"


class ContinuousBatch:
    def __init__(self, model: LongVU, slots: int, length: int, prefill_tokens: int = 8192,
                 cuda_graphs: bool = False, window_block: int = 1024, prefix_entries: int = 0,
                 max_prompt: int | None = None) -> None:
        cfg = model.llm.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.model, self.prefill_tokens = model, prefill_tokens
        self.cache = SlotCache(cfg.num_hidden_layers, slots, cfg.num_key_value_heads, length, head_dim,
                               model.dtype, model.device)
        self.prefixes = PrefixCache(prefix_entries, self.cache, max_prompt or self.cache.usable, cfg.hidden_size,
                                    model.dtype) if prefix_entries else None
        self.decoding: list[Sequence] = []
        self.prefilling: list[Sequence] = []
        self.buckets = buckets(slots)
        self.windows = windows(length, window_block)
        # Inputs of a decode step live in fixed buffers, so that a captured graph reads them.
        self._tokens = torch.zeros(slots, 1, dtype=torch.long, device=model.device)
        self._positions = torch.full((slots,), self.cache.scratch, dtype=torch.long, device=model.device)
        self._key_index = torch.arange(length, device=model.device)
        # The repetition penalty, for all rows at once: which tokens each slot's answer holds
        # so far, and each slot's penalty (1: none).
        self._seen = torch.zeros(slots, cfg.vocab_size, dtype=torch.bool, device=model.device)
        self._penalty = torch.ones(slots, 1, dtype=torch.float32, device=model.device)
        self._graphs: DecodeGraphs | None = None
        if cuda_graphs and model.device.type == "cuda":
            shapes = [(rows, window) for rows in self.buckets for window in self.windows]
            self._graphs = DecodeGraphs.capture(self._forward_decode, shapes)

    @property
    def slots(self) -> int:
        return self.cache.slots

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.decoding) - len(self.prefilling)

    @property
    def has_room(self) -> bool:
        return self.free_slots > 0

    @property
    def unfilled(self) -> int:
        """Prompt positions waiting for prefill."""
        return sum(seq.prompt_len - seq.filled for seq in self.prefilling)

    @property
    def graph_fallbacks(self) -> int:
        """Decode steps that ran eagerly although graphs were asked for (their shape's capture failed)."""
        return self._graphs.fallbacks if self._graphs is not None else 0

    @property
    def graphs(self) -> bool:
        """Whether decode steps replay captured graphs (some shapes may still run eagerly)."""
        return self._graphs is not None and bool(self._graphs.graphs)

    def graph_shapes(self) -> dict[str, int]:
        """How many decode shapes replay a captured graph and how many run eagerly."""
        if self._graphs is None:
            return {"captured": 0, "eager": 0}
        return {"captured": len(self._graphs.graphs), "eager": len(self._graphs.eager)}

    def start(self, seq: Sequence) -> None:
        """Take a slot and wait for prefill; `has_room` must be true."""
        if not self.has_room:
            raise RuntimeError("no free slot")
        need = seq.prompt_len + seq.params.max_new_tokens
        if need > self.cache.usable:
            raise ValueError(f"prompt and answer take {need} positions; the cache holds {self.cache.usable}")
        seq.slot, seq.filled, seq.produced = len(self.decoding) + len(self.prefilling), 0, 0
        if self.prefixes is not None:  # a prompt that begins as a stored one starts where they part
            seq.shared = self.prefixes.match(seq.embeds)
            if seq.shared[1]:
                self.prefixes.load(*seq.shared, self.cache, seq.slot)
                seq.filled = seq.shared[1]
        self._seen[seq.slot] = False
        self._penalty[seq.slot] = seq.params.repetition_penalty
        self.prefilling.append(seq)

    @torch.inference_mode()
    def prefill(self) -> list[Emitted]:
        """One packed pass over the waiting prompts; the first token of each it completes."""
        pieces = self._plan()
        if not pieces:
            return []
        seqs = self.prefilling[: len(pieces)]
        device = self.model.device
        packed = PackedPrefill(pieces, self.cache)
        embeds = torch.cat([seq.embeds[p.start : p.end] for seq, p in zip(seqs, pieces, strict=True)])
        done = [seq for seq, p in zip(seqs, pieces, strict=True) if p.end == seq.prompt_len]  # all but a chunk
        keep = packed.last_positions[: len(done)].to(device)
        self.cache.plan_prefill(packed)
        out = self.model.llm(inputs_embeds=embeds[None].to(device), attention_mask=packed.no_masks(),
                             position_ids=packed.positions[None].to(device), cache=self.cache, use_cache=True,
                             logits_to_keep=keep, packed_prefill=packed)
        for seq, p in zip(seqs, pieces, strict=True):
            seq.filled = p.end
        if self.prefixes is not None:
            for seq in done:
                if seq.scorer is None:  # answers: a window's prompt is seldom asked again
                    self.prefixes.store(seq.embeds, self.cache, seq.slot, seq.shared)
        del self.prefilling[: len(done)]
        self.decoding.extend(done)  # they hold the slots right after the decoding ones
        logits = out.logits[0]
        answering = [i for i, seq in enumerate(done) if seq.scorer is None]
        scored = [self._score(seq, logits[i]) for i, seq in enumerate(done) if seq.scorer is not None]
        if len(answering) < len(done):
            logits = logits[torch.tensor(answering, dtype=torch.long, device=logits.device)]
        return scored + self._emit_all([done[i] for i in answering], logits)  # no answer yet: no penalty

    def _score(self, seq: Sequence, logits: torch.Tensor) -> Emitted:
        assert seq.scorer is not None
        score = float(seq.scorer.scores(logits[None])[0])
        if not math.isfinite(score):
            return self._overflowed(seq)
        self.release(seq)
        return Emitted(seq, None, True, score=score)

    def _plan(self) -> list[Piece]:
        """This pass's pieces, first come first: the first waiting prompt, cut to
        `prefill_tokens` positions only while answers decode, then every next prompt that
        fits whole in what is left of `prefill_tokens`."""
        pieces: list[Piece] = []
        total = 0
        for seq in self.prefilling:
            left = seq.prompt_len - seq.filled
            if not pieces:
                take = min(left, self.prefill_tokens) if self.decoding else left
            elif left <= self.prefill_tokens - total:
                take = left
            else:
                break
            pieces.append(Piece(seq.slot, seq.filled, seq.filled + take, total))
            total += take
        return pieces

    @torch.inference_mode()
    def decode(self) -> list[Emitted]:
        """One token for every decoding question."""
        n = len(self.decoding)
        if n == 0:
            return []
        rows = next(b for b in self.buckets if b >= n)
        longest = max(seq.filled for seq in self.decoding) + 1
        window = next(w for w in self.windows if w >= longest)
        scratch = self.cache.scratch
        tokens = [seq.pending for seq in self.decoding] + [0] * (rows - n)
        positions = [seq.filled for seq in self.decoding] + [scratch] * (rows - n)
        self._tokens[:rows, 0].copy_(torch.tensor(tokens), non_blocking=True)
        self._positions[:rows].copy_(torch.tensor(positions), non_blocking=True)
        if self._graphs is not None:
            logits = self._graphs.run(rows, window)
        else:
            logits = self._forward_decode(rows, window)
        logits = self._penalized(logits[:n], n)
        stepped = list(self.decoding)
        for seq in stepped:
            seq.filled += 1
        return self._emit_all(stepped, logits)

    def release(self, seq: Sequence) -> None:
        """Free the sequence's slot (finished or cancelled); later slots move down, so the
        slots stay packed (a waiting prompt has little or nothing cached to move)."""
        if seq in self.prefilling:
            self.prefilling.remove(seq)
        elif seq in self.decoding:
            index, last = self.decoding.index(seq), len(self.decoding) - 1
            if index != last:
                moved = self.decoding[last]
                self._move(last, index, moved.filled)
                moved.slot, self.decoding[index] = index, moved
            self.decoding.pop()
        for slot, waiting in enumerate(self.prefilling, start=len(self.decoding)):
            if waiting.slot != slot:
                self._move(waiting.slot, slot, waiting.filled)
                waiting.slot = slot
        seq.slot = -1

    def clear(self) -> list[Sequence]:
        """Drop every sequence (after a failed step); returns them."""
        dropped = [*self.decoding, *self.prefilling]
        self.decoding, self.prefilling = [], []
        for seq in dropped:
            seq.slot = -1
        return dropped

    def _move(self, src: int, dst: int, filled: int) -> None:
        self.cache.move(src, dst, filled)
        self._seen[dst], self._penalty[dst] = self._seen[src], self._penalty[src]

    def _penalized(self, logits: torch.Tensor, n: int) -> torch.Tensor:
        """transformers' repetition penalty on every row at once, over each answer's own
        tokens: a seen token's logit divided by the penalty when positive, multiplied when
        negative. No row waits on the device for it."""
        if all(seq.params.repetition_penalty == 1.0 for seq in self.decoding):
            return logits
        wide, penalty = logits.float(), self._penalty[:n]  # in float32, rounded once, as with a scalar penalty
        return torch.where(self._seen[:n], torch.where(wide < 0, wide * penalty, wide / penalty), wide).to(logits.dtype)

    def _emit_all(self, seqs: list[Sequence], logits: torch.Tensor) -> list[Emitted]:
        """Each row's token (the step's one wait on the device); a row whose logits are not
        finite ends with an error, the others go on."""
        tokens, finite = choose(logits, [seq.params for seq in seqs], [seq.generator for seq in seqs])
        self._remember([s for s, ok in zip(seqs, finite, strict=True) if ok], [t for t, ok in zip(tokens, finite,
                                                                                                  strict=True) if ok])
        return [self._emit(seq, token) if ok else self._overflowed(seq)
                for seq, token, ok in zip(seqs, tokens, finite, strict=True)]

    def _overflowed(self, seq: Sequence) -> Emitted:
        # Its keys and values hold NaN or inf: masked positions still meet SDPA's value
        # product (0 * NaN is NaN), so the slot's next holder must not find them.
        self.cache.clear(seq.slot)
        self.release(seq)
        return Emitted(seq, None, True, error=non_finite_message(self.model.dtype))

    def _remember(self, seqs: list[Sequence], tokens: list[int]) -> None:
        if not seqs:
            return
        device = self._seen.device
        rows = torch.tensor([seq.slot for seq in seqs], dtype=torch.long).to(device, non_blocking=True)
        self._seen[rows, torch.tensor(tokens, dtype=torch.long).to(device, non_blocking=True)] = True

    def _emit(self, seq: Sequence, token: int) -> Emitted:
        if token in seq.stop_ids:
            self.release(seq)
            return Emitted(seq, None, True)
        seq.produced += 1
        seq.pending = token
        spent = seq.produced >= seq.params.max_new_tokens
        if spent:
            self.release(seq)
        return Emitted(seq, token, spent)

    def _forward_decode(self, rows: int, window: int) -> torch.Tensor:
        positions = self._positions[:rows]
        mask = self._key_index[None, :window] <= positions[:, None]
        self.cache.plan_decode(rows, positions, window)
        out = self.model.llm(input_ids=self._tokens[:rows], attention_mask=mask[:, None, None, :],
                             position_ids=positions[:, None], cache=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1]


class DecodeGraphs:
    """One CUDA graph per decode shape (rows, window), all in one memory pool, each checked
    against eager decoding when captured. A shape whose capture or check fails runs eagerly,
    alone: the others keep their graphs."""

    def __init__(self, forward: Callable[[int, int], torch.Tensor]) -> None:
        self.forward = forward
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}
        self.outputs: dict[tuple[int, int], torch.Tensor] = {}
        self.eager: list[tuple[int, int]] = []
        self.fallbacks = 0  # steps run eagerly

    @classmethod
    def capture(cls, forward: Callable[[int, int], torch.Tensor], shapes: list[tuple[int, int]]) -> DecodeGraphs:
        graphs = cls(forward)
        pool = torch.cuda.graph_pool_handle()
        with torch.inference_mode():
            for shape in reversed(shapes):  # largest first: the pool then fits the others
                try:
                    graphs._capture(shape, pool)
                except Exception as exc:  # this shape decodes eagerly, slower: counted at each step
                    graphs.eager.append(shape)
                    log.warning("decode shape %s (rows, window) runs eagerly, without a CUDA graph: %s: %s",
                                shape, type(exc).__name__, exc)
        if graphs.eager:
            log.warning("CUDA graphs for %d of %d decode shapes; eager: %s", len(graphs.graphs), len(shapes),
                        sorted(graphs.eager))
        return graphs

    def _capture(self, shape: tuple[int, int], pool: tuple[int, int]) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                expected = self.forward(*shape).clone()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            out = self.forward(*shape)
        graph.replay()
        if not torch.allclose(out.float(), expected.float(), rtol=1e-2, atol=1e-2):
            raise RuntimeError("the graph disagrees with eager decoding")
        self.graphs[shape], self.outputs[shape] = graph, out

    def run(self, rows: int, window: int) -> torch.Tensor:
        graph = self.graphs.get((rows, window))
        if graph is None:
            self.fallbacks += 1
            return self.forward(rows, window)
        graph.replay()
        return self.outputs[rows, window]
