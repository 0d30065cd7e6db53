import dataclasses
import statistics
import time
from pathlib import Path

import pytest
import torch

from models.arithmetic import always_prune_from
from models.vision.encode import EmptyVideoError, encode_video
from models.vision.encoded import EncodedFormatError, EncodedVideo
from models.vision.frames import sample_frames
from models.vision.tower_steps import FixedSteps, TimedSteps
from tests.videos import write_video


def test_static_video_keeps_only_each_windows_middle_frame(model, static_long_video: Path) -> None:  # type: ignore[no-untyped-def]
    encoded = encode_video(model, sample_frames(static_long_video))
    assert encoded.frames_sampled == 150 >= always_prune_from(model.config)
    assert encoded.pruned
    # Windows of 16; the last holds frames 144..149 and its middle is 144 + 3.
    expected = [start + 8 for start in range(0, 144, 16)] + [147]
    assert encoded.frame_indices.tolist() == expected
    assert encoded.timestamps.tolist() == [float(i) for i in expected]
    assert encoded.features.shape == (len(expected), 144, 64)
    assert encoded.frames_cached == len(expected) == encoded.frames_survived
    assert encoded.rows_cached == len(expected) * 144


def test_pruning_takes_the_batch_in_one_call_and_the_towers_take_chunks(
        model, static_long_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from models.vision import encode

    pruned: list[int] = []
    towers: list[int] = []
    prune, dino = encode.window_prune, model.towers.encode_dino

    def counting_prune(maps, *args):  # type: ignore[no-untyped-def]
        pruned.append(maps.shape[0])
        return prune(maps, *args)

    def counting_dino(pixels):  # type: ignore[no-untyped-def]
        towers.append(pixels.shape[0])
        return dino(pixels)

    monkeypatch.setattr(encode, "window_prune", counting_prune)
    monkeypatch.setattr(model.towers, "encode_dino", counting_dino)
    steps: list[str] = []
    through: list[int] = []
    encoded = encode_video(model, sample_frames(static_long_video),
                           progress=lambda pts, encoded, survived: through.append(encoded),
                           device_step=lambda work: (steps.append(work.__name__), work())[1])
    assert pruned == [150]  # 150 small frames: one batch, its 10 windows in one call
    assert towers == [64, 64, 22]  # one device step a chunk
    assert through[:3] == [64, 128, 150]  # progress after every chunk, not only every batch
    assert steps == ["dino_step"] * 3 + ["prune"] + ["fuse_step"]  # the 10 survivors in one step
    assert encoded.frame_indices.tolist() == [start + 8 for start in range(0, 144, 16)] + [147]


def test_timed_steps_size_tower_steps_by_device_time(
        model, static_long_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A DINO tower slowed by 10 ms a frame and a 50 ms target: after a first step of one
    window, steps take a few frames each and about the target's time; the features equal
    those of fixed steps."""
    dino = model.towers.encode_dino
    steps: list[tuple[int, float]] = []  # frames, seconds

    def slow_dino(pixels):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        time.sleep(0.01 * pixels.shape[0])
        out = dino(pixels)
        steps.append((pixels.shape[0], time.perf_counter() - started))
        return out

    fixed = encode_video(model, sample_frames(static_long_video))
    monkeypatch.setattr(model.towers, "encode_dino", slow_dino)
    timed = encode_video(model, sample_frames(static_long_video), tower_steps=TimedSteps(0.05))
    sizes = [n for n, _ in steps]
    assert sizes[0] == 16 and sum(sizes) == 150 and max(sizes[1:]) <= 5, sizes
    assert 0.025 <= statistics.median(s for _, s in steps[1:-1]) <= 0.075, steps
    assert torch.allclose(timed.features, fixed.features, atol=1e-5)
    assert timed.frame_indices.tolist() == fixed.frame_indices.tolist()


def test_short_video_keeps_every_frame_and_the_dino_mask(model, short_video: Path) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[float, int, int]] = []
    encoded = encode_video(model, sample_frames(short_video), progress=lambda *p: seen.append(p))
    assert not encoded.pruned
    assert encoded.frames_sampled == 12 and encoded.features.shape[0] == 12
    assert encoded.frame_indices.tolist() == list(range(12))
    assert encoded.dino_keep.dtype == torch.bool and encoded.dino_keep.shape == (12,)
    assert (encoded.width, encoded.height) == (64, 48)
    assert seen and seen[-1][:2] == (11.0, 12) and seen[-1][2] == encoded.frames_survived


def test_more_than_400_survivors_are_capped(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    everything_survives = dataclasses.replace(model, config=dataclasses.replace(model.config, dino_threshold=2.0))
    video = write_video(tmp_path / "long.mp4", seconds=420, fps=1, width=16, height=16)
    encoded = encode_video(everything_survives, sample_frames(video))
    assert encoded.frames_sampled == encoded.frames_survived == 420
    assert encoded.frame_indices.tolist() == [int(i * 420 / 400) for i in range(400)]


def test_features_do_not_depend_on_which_frames_are_kept(model, short_video: Path) -> None:  # type: ignore[no-untyped-def]
    """SVA is per frame: a frame's features are the same alone or in a batch."""
    frames = list(sample_frames(short_video))
    alone = encode_video(model, frames[5:6])
    together = encode_video(model, frames)
    assert torch.allclose(alone.features[0], together.features[5], atol=1e-5)


def test_round_trip_is_exact_and_byte_stable(model, short_video: Path) -> None:  # type: ignore[no-untyped-def]
    first = encode_video(model, sample_frames(short_video))
    data = first.to_bytes()
    assert encode_video(model, sample_frames(short_video)).to_bytes() == data
    back = EncodedVideo.from_bytes(data)
    assert back.to_bytes() == data
    for field in dataclasses.fields(EncodedVideo):
        a, b = getattr(first, field.name), getattr(back, field.name)
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, field.name


@pytest.mark.parametrize("data", [b"", b"garbage" * 10, b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_corrupt_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(EncodedFormatError):
        EncodedVideo.from_bytes(data)


def test_no_frames_is_an_error(model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EmptyVideoError):
        encode_video(model, iter([]))


def test_timed_steps_learn_per_tower_and_picture_size() -> None:
    steps = TimedSteps(0.025, most=64, first=16)
    assert steps.frames("dino", (720, 1280)) == 16  # untimed: one window
    steps.measured("dino", (720, 1280), 16, 0.16)  # 10 ms a frame
    assert steps.frames("dino", (720, 1280)) == 2
    assert steps.frames("fuse", (720, 1280)) == 16 and steps.frames("dino", (2160, 3840)) == 16
    steps.measured("dino", (720, 1280), 10, 0.001)  # faster now: the estimate moves, smoothed
    assert 2 < steps.frames("dino", (720, 1280)) < 64
    steps.measured("fuse", (48, 64), 8, 1e-6)
    assert steps.frames("fuse", (48, 64)) == 64  # never more than `most`
    assert FixedSteps(7).frames("dino", (1, 1)) == 7
