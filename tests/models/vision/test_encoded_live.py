"""A live stream's windows as one video: pruned as a file of the same frames would be, and
capped at 400 frames per question, after its time range."""

from __future__ import annotations

from dataclasses import replace

import torch

from models.arithmetic import MAX_FRAMES, cap_indices
from models.vision.encoded import EncodedVideo


def window(first: int, keep: list[bool], pruned: bool) -> EncodedVideo:
    n = len(keep)
    rows = [i for i in range(n) if keep[i] or not pruned]
    times = torch.arange(first, first + n, dtype=torch.float64)
    return EncodedVideo(
        features=torch.arange(first, first + n, dtype=torch.float32)[rows].view(-1, 1, 1).expand(-1, 2, 3).clone(),
        frame_indices=torch.arange(first, first + n)[rows], timestamps=times[rows],
        dino_keep=torch.tensor(keep)[rows], pruned=pruned, frames_sampled=n, frames_survived=sum(keep),
        width=64, height=48, duration_s=float(first + n), size_quirk=True,
    )


def test_short_streams_keep_every_frame_with_the_mask() -> None:
    joined = EncodedVideo.joined([window(0, [True, False, True, True], False), window(4, [False, True], False)], 10)
    assert not joined.pruned and joined.frames_cached == 6 and joined.frames_sampled == 6
    assert joined.dino_keep.tolist() == [True, False, True, True, False, True]
    assert joined.frames_survived == 4 and joined.duration_s == 6.0


def test_once_long_enough_only_the_frames_under_the_threshold_stay() -> None:
    early = window(0, [True, False, True, True], pruned=False)  # before the stream reached prune_from
    late = window(4, [False, True, True, False], pruned=True)  # held only its kept rows
    joined = EncodedVideo.joined([early, late], 8)
    assert joined.pruned and joined.timestamps.tolist() == [0.0, 2.0, 3.0, 5.0, 6.0]
    assert joined.features[:, 0, 0].tolist() == [0.0, 2.0, 3.0, 5.0, 6.0] and bool(joined.dino_keep.all())


def test_the_cap_applies_after_the_range() -> None:
    parts = [window(16 * i, [True] * 16, pruned=True) for i in range(40)]  # 640 frames kept
    joined = EncodedVideo.joined(parts, 1)
    assert joined.frames_cached == 640
    capped = joined.capped()
    assert capped.frames_cached == MAX_FRAMES
    assert capped.timestamps.tolist() == [float(i) for i in cap_indices(640)]
    recent = joined.between(540, 640).capped()  # the last 100 s: every frame, no cap
    assert recent.frames_cached == 100 and recent.timestamps[0] == 540.0
    assert window(0, [True, False], pruned=False).capped().frames_cached == 2  # not pruned: never capped


def test_windows_tile_the_frames_and_an_empty_one_takes_the_frame_standing_for_it() -> None:
    video = EncodedVideo.made_up(6, 4, 8, every_s=1.0)
    kept = replace(video, **{name: getattr(video, name)[[0, 1, 4]] for name in
                            ("features", "frame_indices", "timestamps", "dino_keep")})
    assert kept.window(0, 2).timestamps.tolist() == [0.0, 1.0]  # [0, 2): the frame at 2 s is not in it
    assert kept.window(2, 4).timestamps.tolist() == [1.0]  # 2 s and 3 s were pruned: the frame at 1 s stands
    assert kept.window(4, 6).timestamps.tolist() == [4.0]
    assert torch.equal(kept.window(2, 4).features, kept.features[1:2])
    late = replace(kept, timestamps=kept.timestamps + 3)  # nothing before 3 s
    assert late.window(0, 2).timestamps.tolist() == [3.0]  # the first frame after stands for it
