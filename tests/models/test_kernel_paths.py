"""The pipeline gives the same result whichever implementation of the kernels runs."""

from pathlib import Path

import pytest
import torch

import kernels.dispatch
from models.build import build_inputs
from models.encode import encode_video
from models.frames import sample_frames
from tests.models.synthetic import synthetic_encoded


def _both_paths(monkeypatch: pytest.MonkeyPatch, run):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(kernels.dispatch, "interpreting", lambda: True)
    with_triton = run()
    monkeypatch.setattr(kernels.dispatch, "interpreting", lambda: False)
    with_torch = run()
    return with_triton, with_torch


def test_encode_is_identical(model, static_long_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    a, b = _both_paths(monkeypatch, lambda: encode_video(model, sample_frames(static_long_video)))
    assert torch.equal(a.frame_indices, b.frame_indices)
    assert torch.equal(a.features, b.features)


def test_stc_inputs_are_identical(model, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    encoded = synthetic_encoded(model, 300)
    a, b = _both_paths(monkeypatch, lambda: build_inputs(model, encoded, "What happens?"))
    assert a.stc_applied and b.stc_applied
    assert a.visual_tokens_after == b.visual_tokens_after
    assert torch.equal(a.inputs_embeds, b.inputs_embeds)
