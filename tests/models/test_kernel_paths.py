"""The pipeline gives the same result whichever implementation of the kernels runs."""

from pathlib import Path

import pytest
import torch

import kernels.dino_prune
import kernels.stc
from models.build import build_inputs
from models.model import load_longvu
from models.vision.encode import encode_video
from models.vision.frames import sample_frames
from tests.models.synthetic import synthetic_encoded


@pytest.fixture(scope="module")
def kernel_model(model, tiny_checkpoint: Path):  # type: ignore[no-untyped-def]
    """On a GPU box the kernels run compiled on CUDA tensors; elsewhere in the interpreter."""
    if torch.cuda.is_available():
        return load_longvu(str(tiny_checkpoint), device="cuda", dtype=torch.float32)
    return model


def _both_paths(monkeypatch: pytest.MonkeyPatch, run):  # type: ignore[no-untyped-def]
    results = []
    for triton in (True, False):
        for module in (kernels.dino_prune, kernels.stc):
            monkeypatch.setattr(module, "use_triton", lambda tensor, backend="auto", on=triton: on)
        results.append(run())
    return results


def test_encode_is_identical(kernel_model, static_long_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    a, b = _both_paths(monkeypatch, lambda: encode_video(kernel_model, sample_frames(static_long_video)))
    assert torch.equal(a.frame_indices, b.frame_indices)
    assert torch.allclose(a.features, b.features, atol=1e-5)


def test_stc_inputs_are_identical(kernel_model, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    encoded = synthetic_encoded(kernel_model, 300)
    a, b = _both_paths(monkeypatch, lambda: build_inputs(kernel_model, encoded, "What happens?"))
    assert a.stc_applied and b.stc_applied
    assert a.visual_tokens_after == b.visual_tokens_after
    assert torch.allclose(a.inputs_embeds, b.inputs_embeds, atol=1e-5)
