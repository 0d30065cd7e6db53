"""The per-video result of `encode_video`: what the cache holds.

Serialised as safetensors (tensors) with the scalar fields as JSON in the header
metadata: no pickle, and the same object always gives the same bytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, fields, replace

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from models.arithmetic import MAX_FRAMES, cap_indices

SCHEMA_VERSION = 1
_TENSORS = ("features", "frame_indices", "timestamps", "dino_keep")
_META_KEY = "longvu_encoded"


class EncodedFormatError(ValueError):
    pass


@dataclass
class EncodedVideo:
    features: torch.Tensor  # [F, Q, C] SVA output (12x12 queries) of the frames held
    frame_indices: torch.Tensor  # int64 [F]: index among the sampled frames
    timestamps: torch.Tensor  # float64 [F]: source presentation time, seconds
    dino_keep: torch.Tensor  # bool [F]: under the DINO threshold (all true once pruned)
    pruned: bool  # DINO pruning (and the 400 cap) already applied to the frames held
    frames_sampled: int
    frames_survived: int  # frames under the DINO threshold, before the cap
    width: int
    height: int
    duration_s: float
    size_quirk: bool  # the reference's (height, width) frame-size quirk was applied

    @property
    def frames_cached(self) -> int:
        """Frames whose features are held: those kept at encode time (all sampled ones
        when the video was not pruned then; a question may use fewer)."""
        return int(self.features.shape[0])

    @property
    def rows_cached(self) -> int:
        """SVA rows held (144 a frame), not the visual tokens a question is given."""
        return int(self.features.shape[0] * self.features.shape[1])

    @classmethod
    def made_up(cls, frames: int, rows: int, channels: int, every_s: float = 1.0) -> EncodedVideo:
        """A stand-in video for warm-ups and benchmarks: random SVA rows for `frames` kept
        frames of 1280x720, `every_s` seconds apart."""
        gen = torch.Generator().manual_seed(0)
        times = torch.arange(frames, dtype=torch.float64) * every_s
        return cls(
            features=torch.randn(frames, rows, channels, generator=gen), frame_indices=torch.arange(frames),
            timestamps=times, dino_keep=torch.ones(frames, dtype=torch.bool), pruned=True, frames_sampled=frames,
            frames_survived=frames, width=1280, height=720, duration_s=frames * every_s, size_quirk=True,
        )

    def between(self, start_s: float, end_s: float) -> EncodedVideo:
        """The frames held whose time lies in [start_s, end_s], as a video of their own:
        a question about that part of the video needs no decoding and no encoding."""
        return self._part((self.timestamps >= start_s) & (self.timestamps <= end_s), start_s, end_s)

    def window(self, start_s: float, end_s: float) -> EncodedVideo:
        """The frames held in [start_s, end_s) (windows that tile a range share no frame),
        as `between` gives them. A window whose frames were all pruned gets the held frame
        that stands for its seconds: the last one before it (DINO pruning drops a frame like
        the one kept before it), else the first one after."""
        inside = (self.timestamps >= start_s) & (self.timestamps < end_s)
        if not bool(inside.any()) and self.frames_cached:
            before = torch.nonzero(self.timestamps < start_s).flatten()
            row = int(before[-1]) if before.numel() else 0
            inside = torch.zeros_like(inside)
            inside[row] = True
        return self._part(inside, start_s, end_s)

    def _part(self, inside: torch.Tensor, start_s: float, end_s: float) -> EncodedVideo:
        held = int(inside.sum())
        return EncodedVideo(
            features=self.features[inside], frame_indices=self.frame_indices[inside],
            timestamps=self.timestamps[inside], dino_keep=self.dino_keep[inside], pruned=self.pruned,
            frames_sampled=held, frames_survived=int(self.dino_keep[inside].sum()) if not self.pruned else held,
            width=self.width, height=self.height, duration_s=max(0.0, min(end_s, self.duration_s) - start_s),
            size_quirk=self.size_quirk,
        )

    def capped(self) -> EncodedVideo:
        """At most the reference's 400 frames once pruned (evenly spaced, as at encode
        time): a live stream's frames are capped per question, after its time range."""
        if not self.pruned or self.frames_cached <= MAX_FRAMES:
            return self
        rows = torch.tensor(cap_indices(self.frames_cached), dtype=torch.int64)
        return replace(self, features=self.features[rows], frame_indices=self.frame_indices[rows],
                       timestamps=self.timestamps[rows], dino_keep=self.dino_keep[rows])

    @classmethod
    def joined(cls, parts: list[EncodedVideo], prune_from: int) -> EncodedVideo:
        """A live stream's windows as one video: pruned (only the frames under the DINO
        threshold) once it has `prune_from` sampled frames, as a file would be; not capped."""
        sampled = sum(p.frames_sampled for p in parts)
        pruned = sampled >= prune_from
        keep = torch.cat([p.dino_keep for p in parts])
        rows = keep if pruned else torch.ones_like(keep)
        last = parts[-1]
        held = [p.features for p in parts if p.frames_cached]  # a pruned window may hold none
        return cls(
            features=torch.cat(held)[rows] if held else torch.empty(0, 0, 0),
            frame_indices=torch.cat([p.frame_indices for p in parts])[rows],
            timestamps=torch.cat([p.timestamps for p in parts])[rows], dino_keep=keep[rows], pruned=pruned,
            frames_sampled=sampled, frames_survived=sum(p.frames_survived for p in parts), width=last.width,
            height=last.height, duration_s=last.duration_s, size_quirk=last.size_quirk,
        )

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in _TENSORS)

    def _meta(self) -> dict[str, object]:
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _TENSORS}
        meta["schema_version"] = SCHEMA_VERSION
        return meta

    def to_bytes(self) -> bytes:
        tensors = {name: getattr(self, name).detach().cpu().contiguous() for name in _TENSORS}
        return save_tensors(tensors, metadata={_META_KEY: json.dumps(self._meta(), sort_keys=True)})

    @classmethod
    def from_bytes(cls, data: bytes) -> EncodedVideo:
        try:
            (header_len,) = struct.unpack("<Q", data[:8])
            header = json.loads(data[8 : 8 + header_len])
            meta = json.loads(header["__metadata__"][_META_KEY])
            tensors = load_tensors(data)
        except Exception as exc:  # any corruption of the cached bytes
            raise EncodedFormatError(f"not an encoded video: {exc}") from exc
        if meta.pop("schema_version", None) != SCHEMA_VERSION:
            raise EncodedFormatError("encoded video has another schema version")
        return cls(**{name: tensors[name] for name in _TENSORS}, **meta)
