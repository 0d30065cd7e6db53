import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open

from models.build import build_inputs
from models.vision.encode import encode_video
from models.vision.frames import sample_frames


def test_dump_inputs_writes_what_the_llm_receives(model, tiny_checkpoint: Path, short_video: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dump = tmp_path / "dump.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "models.dump_inputs", "--checkpoint", str(tiny_checkpoint), "--video",
         str(short_video), "--question", "What is shown?", "--dump", str(dump), "--device", "cpu"],
        capture_output=True, text=True, check=True,
    )
    assert "frames sampled 12" in result.stdout
    with safe_open(str(dump), "pt") as f:
        counts = json.loads(f.metadata()["counts"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert tensors["siglip_pixels"].shape == (12, 3, 384, 384)
    assert tensors["dino_pixels"].shape == (12, 3, 378, 378)
    assert counts["frames_sampled"] == 12 and counts["regime"] == "high"
    assert (tensors["input_ids"] == -200).sum() == 1

    built = build_inputs(model, encode_video(model, sample_frames(short_video)), "What is shown?")
    assert torch.equal(tensors["input_ids"], built.input_ids)
    assert torch.equal(tensors["kept_frame_indices"], built.frame_indices)
    assert torch.allclose(tensors["inputs_embeds"], built.inputs_embeds[0], atol=1e-5)
    assert counts["visual_tokens_after"] == built.visual_tokens_after
    with torch.inference_mode():
        logits = model.llm(inputs_embeds=built.inputs_embeds).logits[0, -1]
    assert tensors["logits"].dtype == torch.float32 and torch.allclose(tensors["logits"], logits, atol=1e-4)
