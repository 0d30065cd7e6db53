"""The LongVU method's arithmetic (SPEC section 1): every count, budget, regime, threshold
and cut, as plain functions of numbers. No tensors, no modules, no I/O: the stages
(`models.vision.encode`, `models.build`, the connector, the decoder) ask here and do the work.

Two prompt lengths appear, as in the reference (`prepare_inputs_labels_for_multimodal`):
`prompt_len` counts the prompt's ids with the video placeholder and decides pruning and
the regime; the token budget counts the text tokens alone (`prompt_len - 1`).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

from models.config import LongVUConfig

SamplingMode = Literal["exact", "reference"]
Regime = Literal["high", "query", "stc"]

MAX_FRAMES = 400  # the reference's cap on frames surviving DINO pruning


class FrameSampler:
    """Step 1, frame by frame in presentation order: is this frame sampled?

    - `exact`: the first frame at or after each whole second of presentation time; the
      seconds inside a gap longer than a second take no frame (none is sampled twice).
    - `reference`: every round(fps)-th frame by index, fps the stream's average rate, as
      the reference samples with decord.
    """

    def __init__(self, mode: SamplingMode, fps: float) -> None:
        self.mode, self.step = mode, max(1, round(fps))
        self.seen, self.next_second = 0, 0

    def take(self, t: Fraction | None) -> bool:
        index, self.seen = self.seen, self.seen + 1
        if self.mode == "reference":
            return index % self.step == 0
        if t is None or t < self.next_second:
            return False
        self.next_second = math.floor(t) + 1
        return True


def _room(cfg: LongVUConfig, prompt_len: int) -> int:
    return cfg.tokenizer_model_max_length - prompt_len - cfg.inference_max_length


def prune_from(cfg: LongVUConfig, prompt_len: int) -> int:
    """Step 4: the frame count from which DINO pruning applies to this prompt."""
    per_frame = cfg.lowres_token**2 if cfg.highres else cfg.image_token_len
    return max(1, _room(cfg, prompt_len) // per_frame)


def always_prune_from(cfg: LongVUConfig) -> int:
    """The frame count from which every prompt prunes (the shortest prompt: one id)."""
    return prune_from(cfg, 1)


def cap_indices(n: int, cap: int = MAX_FRAMES) -> list[int]:
    """Step 4: which of `n` surviving frames stay, uniformly, when more than `cap` survive."""
    if n <= cap:
        return list(range(n))
    step = n / float(cap)
    return [int(step * i) for i in range(cap)]


def token_budget(cfg: LongVUConfig, prompt_len: int) -> int:
    """Step 6: the visual tokens a prompt of `prompt_len` ids (placeholder included) leaves."""
    return cfg.tokenizer_model_max_length - cfg.inference_max_length - (prompt_len - 1)


def leaves_room(cfg: LongVUConfig, prompt_len: int) -> bool:
    """Whether a prompt of `prompt_len` ids leaves any visual token for the video."""
    return token_budget(cfg, prompt_len) >= 1


def stc_from(cfg: LongVUConfig, prompt_len: int) -> int:
    """Step 6: the frame count from which the regime is "stc"."""
    return max(1, _room(cfg, prompt_len) // cfg.lowres_token**2) + 1


def regime(cfg: LongVUConfig, frames: int, prompt_len: int) -> Regime:
    """Step 6: every frame at 12x12 ("high"), at 8x8 with the cross-modal query ("query"),
    or at 12x12 then STC ("stc"). Without `highres` the middle band stays "high"."""
    if frames >= stc_from(cfg, prompt_len):
        return "stc"
    query_possible = cfg.highres and cfg.image_token_len > cfg.lowres_token**2
    if frames < max(1, _room(cfg, prompt_len) // cfg.image_token_len) or not query_possible:
        return "high"
    return "query"


def query_k(budget: int, frames: int, low_tokens: int, high_tokens: int) -> int:
    """Step 7: how many frames the query upgrades from `low_tokens` to `high_tokens` per
    frame (newlines included), all frames starting low."""
    room_left = budget - frames * low_tokens
    step = high_tokens - low_tokens
    return room_left // step if room_left > 0 and step > 0 else 0


def stc_cut(kept: int, budget: int, chunks: int) -> int:
    """Step 8: tokens cut off the end of every chunk when STC alone leaves `kept` > budget."""
    return math.ceil((kept - budget) / chunks) if kept > budget else 0


def unpad_size(width: int, height: int, size_quirk: bool) -> tuple[int, int]:
    """Step 10: the (width, height) the reference's un-padding reads. It is handed the
    frame's (height, width), so with the quirk a wide frame is treated as tall."""
    return (height, width) if size_quirk else (width, height)


def unpad_extent(side_h: int, side_w: int, size: tuple[int, int]) -> tuple[slice, slice]:
    """The rows and columns of a padded-square `side_h x side_w` map that hold picture,
    `size` read as (width, height) as the reference's `unpad_image` reads it."""
    orig_w, orig_h = size
    if orig_w / orig_h > side_w / side_h:
        new_h = int(orig_h * (side_w / orig_w))
        pad = (side_h - new_h) // 2
        return slice(pad, side_h - pad), slice(0, side_w)
    new_w = int(orig_w * (side_h / orig_h))
    pad = (side_w - new_w) // 2
    return slice(0, side_h), slice(pad, side_w - pad)


def lowres_size(size: tuple[int, int], side: int, low_side: int) -> tuple[int, int]:
    """The size the low-resolution (8x8) map is un-padded with: the 12x12 one's, scaled
    and truncated as the reference does."""
    shrink = side / low_side
    return int(size[0] / shrink), int(size[1] / shrink)
