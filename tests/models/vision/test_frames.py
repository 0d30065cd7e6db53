from pathlib import Path

import pytest

from models.vision.frames import sample_frames
from tests.videos import write_video


@pytest.mark.parametrize(
    ("fps", "seconds", "expected"),
    [
        (3, 5, [0.0, 1.0, 2.0, 3.0, 4.0]),
        (2.5, 5, [0.0, 1.2, 2.0, 3.2, 4.0]),  # first frame at or after each whole second
        (0.5, 6, [0.0, 2.0, 4.0]),  # a second without a frame takes none
    ],
)
def test_one_frame_per_second(tmp_path: Path, fps: float, seconds: int, expected: list[float]) -> None:
    video = write_video(tmp_path / "v.mp4", seconds=seconds, fps=fps)
    frames = list(sample_frames(video))
    assert [round(f.pts_s, 6) for f in frames] == expected
    assert [f.index for f in frames] == list(range(len(expected)))
    assert frames[0].rgb.shape == (48, 64, 3)


def test_sampled_frame_is_the_decoded_picture(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", seconds=3, fps=1, static=True, codec="mpeg4")
    frames = list(sample_frames(video))
    assert len(frames) == 3
    assert (frames[0].rgb.astype(int) - frames[2].rgb.astype(int)).__abs__().max() <= 2


def test_reference_sampling_steps_by_the_rounded_rate(tmp_path: Path) -> None:
    """The reference takes every round(fps)-th frame: on NTSC video it drifts from the clock."""
    from fractions import Fraction

    video = write_video(tmp_path / "ntsc.mp4", seconds=12, fps=Fraction(30000, 1001), width=32, height=32)
    exact = [round(f.pts_s, 3) for f in sample_frames(video)]
    reference = [round(f.pts_s, 3) for f in sample_frames(video, "reference")]
    assert reference == [round(k * 1.001, 3) for k in range(len(reference))]
    assert exact[:3] == [0.0, 1.001, 2.002] and exact[-1] < 12
    assert len(reference) == len(exact)


def test_reference_sampling_at_a_fractional_rate(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", seconds=5, fps=2.5)
    assert [round(f.pts_s, 6) for f in sample_frames(video, "reference")] == [0.0, 0.8, 1.6, 2.4, 3.2, 4.0]
