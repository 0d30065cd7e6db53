"""Shared fixtures, built once per session: the tiny checkpoint, its loaded model, videos."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.model import LongVU, load_longvu
from models.tiny import write_tiny_checkpoint
from tests.videos import write_video


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def model(tiny_checkpoint: Path) -> LongVU:
    return load_longvu(str(tiny_checkpoint))


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def short_video(video_dir: Path) -> Path:
    """12 s of changing 64x48 frames at 2 fps."""
    return write_video(video_dir / "short.mp4", seconds=12, fps=2)


@pytest.fixture(scope="session")
def static_long_video(video_dir: Path) -> Path:
    """150 s of one unchanging frame at 1 fps: enough frames that DINO pruning applies."""
    return write_video(video_dir / "static.mp4", seconds=150, fps=1, width=32, height=32, static=True)
