"""Per-question stage: budget, cross-modal query, STC, prompt, embeddings (SPEC steps 6-9).

The numbers (which frames, which regime, how many tokens) come from `models.arithmetic`;
this module turns them into the LLM's input embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.stc import CHUNK, stc
from models import arithmetic
from models.arithmetic import Regime, cap_indices, unpad_extent
from models.language.prompt import IMAGE_TOKEN_INDEX, Conversation, prompt_ids
from models.model import LongVU
from models.vision.encoded import EncodedVideo


class PromptTooLongError(ValueError):
    pass


@dataclass
class BuiltInputs:
    input_ids: torch.Tensor  # [T] the prompt, IMAGE_TOKEN_INDEX where the video goes
    inputs_embeds: torch.Tensor  # [1, L, H] what the LLM receives
    frame_indices: torch.Tensor  # [F] sampled-frame indices of the frames used
    timestamps: torch.Tensor  # [F] their presentation times, seconds
    regime: Regime
    stc_applied: bool
    visual_tokens_before: int  # at the regime's resolution, before the query / STC
    visual_tokens_after: int
    highres_frames: int  # frames at 12x12 in the query regime (all frames otherwise)

    @property
    def prompt_tokens(self) -> int:
        return int(self.inputs_embeds.shape[1])


def compression_summary(encoded: EncodedVideo, built: BuiltInputs) -> dict[str, object]:
    """What the per-video and per-question steps did to the video, for people and logs."""
    return {
        "frames_sampled": encoded.frames_sampled,
        "frames_survived_dino": encoded.frames_survived,
        "frames_used": int(built.frame_indices.numel()),
        "regime": built.regime,
        "stc_applied": built.stc_applied,
        "highres_frames": built.highres_frames,
        "visual_tokens_before": built.visual_tokens_before,
        "visual_tokens_after": built.visual_tokens_after,
        "seconds": [round(float(t), 3) for t in built.timestamps],
    }


def frame_tokens(model: LongVU, features: torch.Tensor, side: int, size: tuple[int, int]) -> torch.Tensor:
    """SVA features [F, side*side, C] -> LLM tokens [F, rows * (cols + 1), H]: project,
    cut the padding away, add the newline token after every row."""
    grid = model.connector.project(features).view(features.shape[0], side, side, -1)
    rows, cols = unpad_extent(side, side, size)
    cut = grid[:, rows, cols]
    if cut.shape[1] == 0 or cut.shape[2] == 0:  # the reference falls back to the whole map
        cut = grid
    newline = model.connector.image_newline.view(1, 1, 1, -1).expand(cut.shape[0], cut.shape[1], 1, -1)
    return torch.cat([cut, newline.to(cut.dtype)], dim=2).flatten(1, 2)


def lowres(features: torch.Tensor, side: int, low: int) -> torch.Tensor:
    """[F, side*side, C] -> [F, low*low, C], bilinear in float32."""
    f, _, c = features.shape
    grid = features.permute(0, 2, 1).reshape(f, c, side, side).float()
    out = F.interpolate(grid, size=(low, low), mode="bilinear", align_corners=False)
    return out.to(features.dtype).permute(0, 2, 3, 1).reshape(f, low * low, c)


def query_select(hi: torch.Tensor, lo: torch.Tensor, text: torch.Tensor, k: int) -> tuple[torch.Tensor, int]:
    """Cross-modal query (SPEC step 7): the k frames whose low-resolution tokens have the
    largest mean dot product with the text after the video go up to high resolution."""
    visual = lo.flatten(0, 1)
    sim = (visual.float() @ text.float().T).mean(dim=-1)
    frame_score = sim.view(lo.shape[0], -1).mean(dim=-1)
    k = min(k, lo.shape[0])
    top = set(torch.topk(frame_score, k).indices.tolist())
    return torch.cat([hi[i] if i in top else lo[i] for i in range(lo.shape[0])]), len(top)


def compress(frames: torch.Tensor, budget: int, threshold: float) -> torch.Tensor:
    """STC (SPEC step 8) then the reference's even cut of every chunk to the budget."""
    keep, kept = stc(frames, threshold, CHUNK)
    per_frame = keep.sum(dim=1)
    # One read of every chunk's count (a sync per chunk would stall the device ~50 times).
    per_chunk = F.pad(per_frame, (0, -per_frame.shape[0] % CHUNK)).view(-1, CHUNK).sum(dim=1).tolist()
    cut = arithmetic.stc_cut(kept.shape[0], budget, len(per_chunk))
    if cut:
        kept = torch.cat([piece[:-cut] for piece in kept.split(per_chunk)])
    return kept[:budget]


@torch.inference_mode()
def build_inputs(model: LongVU, encoded: EncodedVideo, question: str | Conversation) -> BuiltInputs:
    cfg = model.config
    ids = prompt_ids(model.tokenizer, cfg, question)
    image_at = ids.index(IMAGE_TOKEN_INDEX)
    if not arithmetic.leaves_room(cfg, len(ids)):
        raise PromptTooLongError(f"the question leaves no room for the video ({len(ids)} prompt tokens)")

    budget = arithmetic.token_budget(cfg, len(ids))
    features, frame_indices, timestamps = encoded.features, encoded.frame_indices, encoded.timestamps
    if not encoded.pruned and encoded.frames_sampled >= arithmetic.prune_from(cfg, len(ids)):
        keep = torch.nonzero(encoded.dino_keep).flatten()
        keep = keep[cap_indices(keep.numel())]  # the 400-frame cap, as when pruned at encode time
        features, frame_indices, timestamps = features[keep], frame_indices[keep], timestamps[keep]
    features = features.to(model.device, model.dtype)
    n = features.shape[0]
    regime = arithmetic.regime(cfg, n, len(ids))

    size = arithmetic.unpad_size(encoded.width, encoded.height, encoded.size_quirk)
    side = cfg.query_side
    hi = frame_tokens(model, features, side, size)
    text_ids = torch.tensor([i for i in ids if i != IMAGE_TOKEN_INDEX], device=model.device)
    text = model.embed(text_ids)
    text_before, text_after = text[:image_at], text[image_at:]

    frames, highres_frames, mixed = hi, n, False
    if regime == "query":
        low_size = arithmetic.lowres_size(size, side, cfg.lowres_token)
        lo = frame_tokens(model, lowres(features, side, cfg.lowres_token), cfg.lowres_token, low_size)
        frames, highres_frames = lo, 0
        k = arithmetic.query_k(budget, n, lo.shape[1], hi.shape[1])
        if k >= 1:
            visual, highres_frames = query_select(hi, lo, text_after, k)
            mixed = True
    before = frames.shape[0] * frames.shape[1]
    stc_applied = not mixed and before > budget
    if stc_applied:
        visual = compress(frames, budget, cfg.drop_threshold)
    elif not mixed:
        visual = frames.flatten(0, 1)

    embeds = torch.cat([text_before, visual.to(text.dtype), text_after])[: cfg.tokenizer_model_max_length]
    return BuiltInputs(
        input_ids=torch.tensor(ids, dtype=torch.int64),
        inputs_embeds=embeds.unsqueeze(0),
        frame_indices=frame_indices,
        timestamps=timestamps,
        regime=regime,
        stc_applied=stc_applied,
        visual_tokens_before=before,
        visual_tokens_after=int(visual.shape[0]),
        highres_frames=highres_frames,
    )
