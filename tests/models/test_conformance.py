"""Conformance with the reference LongVU code, stage by stage, on its own numbers.

`tests/golden/goldens.safetensors` holds what the reference (Vision-CAIR/LongVU with its
pinned transformers 4.42.4) computed on our tiny checkpoint and the two golden videos;
`tests/golden/README.md` says how it was made. Everything here runs in float32 on CPU and
holds to 1e-4 relative (pixels: bit for bit).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from models.build import build_inputs
from models.language.prompt import prompt_ids
from models.vision.encode import encode_video
from models.vision.frames import sample_frames
from models.vision.preprocess import DINO, SIGLIP
from models.vision.towers import legacy_position_embeddings

GOLDEN = Path(__file__).parents[1] / "golden"
TOLERANCE = 1e-4
ROWS = 16


def relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float((ours.float() - reference.float()).norm() / reference.float().norm())


@pytest.fixture(scope="module")
def golden() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = GOLDEN / "goldens.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return load_file(str(path)), meta


@pytest.fixture(scope="module")
def checked_model(model, tiny_checkpoint: Path, golden):  # type: ignore[no-untyped-def]
    h = hashlib.sha256()
    for part in ("model.safetensors", "siglip/model.safetensors", "dino/model.safetensors"):
        h.update((tiny_checkpoint / part).read_bytes())
    assert h.hexdigest() == golden[1]["checkpoint_weights"], (
        "the tiny checkpoint changed: make the goldens again (tests/golden/README.md)")
    return model


@pytest.fixture(scope="module")
def videos(checked_model):  # type: ignore[no-untyped-def]
    """Per golden video: the frames the reference samples, and our encoding of them."""
    out = {}
    for name in ("short", "long"):
        frames = list(sample_frames(GOLDEN / f"{name}.mp4", "reference"))
        out[name] = (frames, encode_video(checked_model, iter(frames)))
    return out


def test_prompt_ids(checked_model, golden) -> None:  # type: ignore[no-untyped-def]
    meta = golden[1]
    assert prompt_ids(checked_model.tokenizer, checked_model.config, meta["question"]) == json.loads(meta["input_ids"])


@pytest.mark.parametrize("name", ["short", "long"])
def test_pixels_are_the_references_bit_for_bit(name: str, videos, golden) -> None:  # type: ignore[no-untyped-def]
    frames = [f.rgb for f in videos[name][0]]
    for tower, preprocess in (("siglip", SIGLIP), ("dino", DINO)):
        hashes = [hashlib.sha256(p.numpy().tobytes()).hexdigest() for p in preprocess(frames)]
        assert hashes == json.loads(golden[1][f"{name}.pixels_{tower}"]), tower


@pytest.mark.parametrize("name", ["short", "long"])
def test_tower_features(name: str, checked_model, videos, golden) -> None:  # type: ignore[no-untyped-def]
    frames, encoded = videos[name]
    reference = golden[0]
    first = [f.rgb for f in frames[:ROWS]]
    assert relative(checked_model.towers.encode_dino(DINO(first)), reference[f"{name}.dino"]) < TOLERANCE
    used = [frames[i].rgb for i in encoded.frame_indices[:ROWS].tolist()]  # SigLIP sees the kept frames
    assert relative(checked_model.towers.encode_siglip(SIGLIP(used)), reference[f"{name}.siglip"]) < TOLERANCE


@pytest.mark.parametrize("name", ["short", "long"])
def test_sva_output(name: str, videos, golden) -> None:  # type: ignore[no-untyped-def]
    encoded = videos[name][1]
    reference = golden[0]
    assert encoded.features.shape[0] == (10 if name == "short" else 400)
    assert relative(encoded.features[:ROWS], reference[f"{name}.sva"]) < TOLERANCE
    assert relative(encoded.features[-ROWS:], reference[f"{name}.sva_last"]) < TOLERANCE


@pytest.mark.parametrize("name", ["short", "long"])
def test_inputs_embeds_and_first_token_logits(name: str, checked_model, videos, golden) -> None:  # type: ignore[no-untyped-def]
    built = build_inputs(checked_model, videos[name][1], golden[1]["question"])
    reference = golden[0]
    assert relative(built.inputs_embeds[0], reference[f"{name}.inputs_embeds"]) < TOLERANCE
    assert (built.regime, built.stc_applied) == (("high", False) if name == "short" else ("stc", True))
    with torch.inference_mode():
        logits = checked_model.llm(inputs_embeds=built.inputs_embeds).logits[0, -1]
    assert relative(logits, reference[f"{name}.logits"]) < TOLERANCE


def test_dino_resize_is_the_reference_one(checked_model, videos, golden) -> None:  # type: ignore[no-untyped-def]
    """Our features match only with transformers 4.42.4's position resize; the resize of
    the installed transformers would not do."""
    dino = checked_model.towers.dino
    ours = dino.embeddings.interpolate_pos_encoding
    assert torch.equal(ours(torch.zeros(1, 730, 1), 378, 378),
                       legacy_position_embeddings(dino.embeddings.position_embeddings, 27, 27))
    frames = [f.rgb for f in videos["short"][0][:ROWS]]
    del dino.embeddings.interpolate_pos_encoding  # the class's own method: transformers 5's resize
    try:
        other = checked_model.towers.encode_dino(DINO(frames))
    finally:
        dino.embeddings.interpolate_pos_encoding = ours
    assert relative(other, golden[0]["short.dino"]) > 100 * TOLERANCE
