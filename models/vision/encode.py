"""Per-video stage: frames -> DINO pruning -> SigLIP -> SVA features (SPEC steps 2-5).

Frames stream through in batches of whole DINO windows, bounded in bytes; pixels and DINO
maps live for one batch, SVA outputs wait on disk, so peak memory does not grow with the
video's length. The towers take a batch in steps sized by `TowerSteps` (a running answer
waits for at most one), pruning takes the batch's windows in one call. The host's part of
a step (stacking and pinning frames) is done on the calling thread, not the device's.

Whether DINO pruning applies depends on the prompt length (SPEC step 4), which a
cached video does not know. A video with at least `always_prune_from` sampled frames
is pruned for any prompt, so it is pruned here. A shorter video keeps the features
of every frame together with the DINO keep mask, and `build_inputs` applies the mask
when the question is long enough to call for it.
"""

from __future__ import annotations

import io
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from kernels.dino_prune import WINDOW, window_prune
from models.arithmetic import always_prune_from, cap_indices, unpad_size
from models.model import LongVU
from models.vision.encoded import EncodedVideo
from models.vision.frames import Frame
from models.vision.preprocess import DINO, SIGLIP, TowerPreprocess, preprocess_on_device
from models.vision.tower_steps import FixedSteps, TowerSteps

T = TypeVar("T")
DeviceStep = Callable[[Callable[[], T]], T]

FRAMES_PER_BATCH = 16 * WINDOW  # at most; fewer for large pictures. One pruning call a batch
BATCH_BYTES = 512 << 20  # RGB frames of one batch, whatever the resolution (at least one window)


def frames_per_batch(frame_bytes: int, budget: int = BATCH_BYTES) -> int:
    """Whole DINO windows (so batches are the video's windows), as many as the byte budget
    holds, one at the least and FRAMES_PER_BATCH at the most."""
    windows = max(1, budget // max(1, frame_bytes) // WINDOW)
    return min(FRAMES_PER_BATCH, windows * WINDOW)


class EmptyVideoError(ValueError):
    pass


class _Spool:
    """The SVA features of the frames held, spooled to a temporary file: an hour of frames
    surviving DINO can far outnumber the 400 that stay, and memory must not grow with
    the video's length. Only the index lists stay in memory."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()
        self.offsets: list[int] = []
        self.indices: list[int] = []
        self.times: list[float] = []
        self.keep: list[bool] = []
        self.row_shape: tuple[int, ...] = ()
        self.dtype = torch.float32

    def add(self, features: torch.Tensor, frames: list[Frame], keep: list[bool]) -> None:
        self.row_shape, self.dtype = tuple(features.shape[1:]), features.dtype
        raw = features.detach().cpu().contiguous().view(torch.uint8).numpy()
        for row in raw:
            self.offsets.append(self.file.seek(0, io.SEEK_END))
            self.file.write(row.tobytes())
        self.indices.extend(f.index for f in frames)
        self.times.extend(f.pts_s for f in frames)
        self.keep.extend(keep)

    def select(self, rows: list[int]) -> None:
        self.offsets = [self.offsets[i] for i in rows]
        self.indices = [self.indices[i] for i in rows]
        self.times = [self.times[i] for i in rows]
        self.keep = [self.keep[i] for i in rows]

    def stack(self) -> torch.Tensor:
        row_bytes = math.prod(self.row_shape) * self.dtype.itemsize
        out = bytearray()
        for offset in self.offsets:
            self.file.seek(offset)
            out += self.file.read(row_bytes)
        self.file.close()
        flat = torch.frombuffer(out, dtype=torch.uint8) if out else torch.empty(0, dtype=torch.uint8)
        return flat.view(self.dtype).view(len(self.offsets), *self.row_shape).clone()


@dataclass
class EncodedBatch:
    """One batch of whole windows through the towers: the SVA features of the rows held
    (every frame, or only those under the DINO threshold when pruning), their frames and
    keep flags, and how many of the batch's frames were under the threshold."""

    features: torch.Tensor
    frames: list[Frame]
    keep: list[bool]
    survived: int


class BatchEncoder:
    """DINO, window pruning, SigLIP and SVA fusion for batches of whole DINO windows (a
    video's, or a live stream's as each window completes), each piece of model work a
    `device_step`, the towers in steps sized by `tower_steps`."""

    def __init__(self, model: LongVU, *, size_quirk: bool = True, device_step: DeviceStep | None = None,
                 tower_steps: TowerSteps | None = None, preprocess: str = "auto") -> None:
        self.model, self.size_quirk = model, size_quirk
        self.on_device: DeviceStep = device_step or (lambda work: work())
        self.steps: TowerSteps = tower_steps or FixedSteps()
        self.width = self.height = 0
        self.mask: torch.Tensor | None = None
        # On the device the frames go up as uint8 and are preprocessed there, inside the
        # device steps; on the host (PIL, the same bits) it stays on the calling thread.
        self.on_host = not preprocess_on_device(preprocess, model.device)

    def _pixels(self, preprocess: TowerPreprocess, rgbs: list[np.ndarray]) -> Callable[[], torch.Tensor]:
        if self.on_host:
            ready = preprocess(rgbs)
            return lambda: ready
        staged = self.model.staging.stage(rgbs)

        def upload() -> torch.Tensor:
            try:
                return preprocess.on_device(staged.tensor, self.model.device)
            finally:
                staged.done()
        return upload

    def _spans(self, tower: str, n: int) -> Iterator[range]:
        start = 0
        while start < n:
            stop = min(n, start + self.steps.frames(tower, (self.height, self.width)))
            yield range(start, stop)
            start = stop

    def _timed(self, tower: str, frames: int, work: Callable[[], T]) -> Callable[[], T]:
        model, steps, size = self.model, self.steps, (self.height, self.width)

        @torch.inference_mode()  # device steps may run on another thread
        def step() -> T:
            started = time.perf_counter()
            out = work()
            if model.device.type == "cuda":
                torch.cuda.synchronize(model.device)  # the device's time, not the launches'
            steps.measured(tower, size, frames, time.perf_counter() - started)
            return out
        step.__name__ = f"{tower}_step"
        return step

    def _dino_step(self, chunk_pixels: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        return lambda: self.model.towers.encode_dino(chunk_pixels())

    def _fuse_step(self, siglip_pixels: Callable[[], torch.Tensor], dino: torch.Tensor, rows: list[int],
                   mask: torch.Tensor) -> Callable[[], torch.Tensor]:
        model = self.model

        def fuse_chunk() -> torch.Tensor:
            siglip = model.towers.encode_siglip(siglip_pixels())
            return model.connector.aggregate(siglip, dino[rows], mask).cpu()
        return fuse_chunk

    @torch.inference_mode()
    def encode(self, batch: list[Frame], pruning: bool,
               dino_done: Callable[[float, int], None] | None = None) -> EncodedBatch:
        """`pruning`: keep only the rows under the DINO threshold. `dino_done` is called
        after every DINO step with the presentation time and the frames of the batch done."""
        if not self.width:
            self.height, self.width = batch[0].rgb.shape[:2]
        rgbs = [f.rgb for f in batch]
        maps = []
        for span in self._spans("dino", len(batch)):
            pixels = self._pixels(DINO, rgbs[span.start : span.stop])
            maps.append(self.on_device(self._timed("dino", len(span), self._dino_step(pixels))))
            if dino_done:
                dino_done(batch[span.stop - 1].pts_s, span.stop)
        threshold = self.model.config.dino_threshold

        @torch.inference_mode()
        def prune() -> tuple[torch.Tensor, list[bool]]:
            dino = maps[0] if len(maps) == 1 else torch.cat(maps)
            # Batches start on window boundaries, so the batch's windows are the video's.
            return dino, window_prune(dino, threshold, WINDOW)[0].tolist()

        dino, keep = self.on_device(prune)
        maps.clear()  # with several steps `dino` is their copy: free the steps' maps before fusing
        if self.mask is None:
            self.mask = self.model.connector.attention_mask(unpad_size(self.width, self.height, self.size_quirk))
        rows = [i for i in range(len(batch)) if keep[i] or not pruning]
        features = []
        for span in self._spans("fuse", len(rows)):
            chosen = rows[span.start : span.stop]
            step = self._fuse_step(self._pixels(SIGLIP, [rgbs[i] for i in chosen]), dino, chosen, self.mask)
            features.append(self.on_device(self._timed("fuse", len(chosen), step)))
        stacked = torch.cat(features) if features else torch.empty(0)
        return EncodedBatch(stacked, [batch[i] for i in rows], [keep[i] for i in rows], sum(keep))


@torch.inference_mode()
def encode_video(
    model: LongVU,
    frames: Iterable[Frame],
    *,
    size_quirk: bool = True,
    duration_s: float | None = None,
    progress: Callable[[float, int, int], None] | None = None,
    device_step: DeviceStep | None = None,
    tower_steps: TowerSteps | None = None,
    preprocess: str = "auto",
) -> EncodedVideo:
    """`progress` is called after every DINO step with the presentation time reached, the
    frames through the towers and the frames under the DINO threshold so far.
    `device_step` runs each piece of model work (a server hands it to its device
    scheduler, so that questions interleave with a long ingest); by default, in place.
    `tower_steps` sizes the tower steps (by default a fixed number of frames). `preprocess`
    is `LONGVU_PREPROCESS`: auto, host or device."""
    encoder = BatchEncoder(model, size_quirk=size_quirk, device_step=device_step, tower_steps=tower_steps,
                           preprocess=preprocess)
    prune_from = always_prune_from(model.config)
    held = _Spool()
    sampled = 0
    survived = 0
    last_pts = 0.0

    def run_batch(batch: list[Frame]) -> None:
        nonlocal sampled, survived
        report = (lambda pts, done: progress(pts, sampled + done, survived)) if progress else None
        pruning = sampled + len(batch) >= prune_from
        if pruning and not all(held.keep):
            held.select([i for i, k in enumerate(held.keep) if k])
        out = encoder.encode(batch, pruning, report)
        survived += out.survived
        sampled += len(batch)
        if out.frames:
            held.add(out.features, out.frames, out.keep)

    batch: list[Frame] = []
    batch_size = FRAMES_PER_BATCH
    for frame in frames:
        if not batch and not sampled:
            batch_size = frames_per_batch(frame.rgb.nbytes)
        batch.append(frame)
        last_pts = frame.pts_s
        if len(batch) == batch_size:
            run_batch(batch)
            batch = []
            if progress:
                progress(last_pts, sampled, survived)
    if batch:
        run_batch(batch)
    if sampled == 0:
        raise EmptyVideoError("the video has no decodable frames")
    pruned = sampled >= prune_from
    if pruned:
        held.select(cap_indices(len(held.offsets)))
    if progress:
        progress(last_pts, sampled, survived)

    return EncodedVideo(
        features=held.stack(),
        frame_indices=torch.tensor(held.indices, dtype=torch.int64),
        timestamps=torch.tensor(held.times, dtype=torch.float64),
        dino_keep=torch.tensor(held.keep, dtype=torch.bool),
        pruned=pruned,
        frames_sampled=sampled,
        frames_survived=survived,
        width=encoder.width,
        height=encoder.height,
        duration_s=float(duration_s if duration_s is not None else last_pts),
        size_quirk=size_quirk,
    )
