"""Make the conformance goldens: the reference LongVU code (Vision-CAIR/LongVU, with its pinned
transformers 4.42.4) run on our tiny checkpoint and on the golden videos here. Not a test: it
runs once, in a side virtualenv, and its output is committed. See README.md beside it.

    /path/to/refvenv/bin/python tests/golden/make_goldens.py --reference /path/to/LongVU \\
        --checkpoint /tmp/golden-tiny
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = Path(__file__).parent
QUESTION = "What happens in the video? Describe it."
VIDEOS = {"short": HERE / "short.mp4", "long": HERE / "long.mp4"}
KEEP_ROWS = 16  # rows of the per-frame stages kept for the long video (files stay small)


def write_videos() -> None:
    """The inputs: a 10-second clip, and a 10-minute one whose last 150 s stand still (DINO
    pruning drops frames, more than 400 survive: the cap, then STC)."""
    rng = np.random.default_rng(20241017)

    def write(path: Path, seconds: int, fps: int, width: int, height: int, still_from: int) -> None:
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=Fraction(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"qscale": "3"}
            picture = None
            for i in range(seconds * fps):
                if picture is None or (i % fps == 0 and i < still_from * fps):
                    blocks = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
                    picture = blocks.repeat(4, 0).repeat(4, 1)
                for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    write(VIDEOS["short"], seconds=10, fps=4, width=64, height=48, still_from=10)
    write(VIDEOS["long"], seconds=600, fps=1, width=64, height=36, still_from=450)


def reference_frames(path: Path) -> list[np.ndarray]:
    """The reference's sampling: every round(fps)-th frame by index (it uses decord)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        step = round(float(stream.average_rate))
    return frames[::step]


def weights_hash(checkpoint: Path) -> str:
    """Which tiny checkpoint the goldens belong to (it is generated from a fixed seed)."""
    h = hashlib.sha256()
    for part in ("model.safetensors", "siglip/model.safetensors", "dino/model.safetensors"):
        h.update((checkpoint / part).read_bytes())
    return h.hexdigest()


def pixel_hash(pixels: torch.Tensor) -> str:
    """One frame's float32 pixels [3, S, S], as the SHA-256 of their bytes."""
    return hashlib.sha256(pixels.float().contiguous().numpy().tobytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a checkout of Vision-CAIR/LongVU")
    parser.add_argument("--checkpoint", type=Path, required=True, help="python -m models.tiny OUT wrote it")
    parser.add_argument("--write-videos", action="store_true", help="write the golden videos anew")
    args = parser.parse_args()
    sys.path.insert(0, str(args.reference))

    import transformers

    # The reference loads its towers from hub names: point them at the tiny checkpoint's.
    # Its conversation module loads the Llama tokenizer at import: the tiny one stands in.
    local = {"facebook/dinov2-giant": str(args.checkpoint / "dino"),
             "google/siglip-so400m-patch14-384": str(args.checkpoint / "siglip"),
             "Vision-CAIR/LongVU_Llama3_2_3B": str(args.checkpoint)}
    for cls in (transformers.AutoTokenizer, transformers.Dinov2Config, transformers.Dinov2Model, transformers.SiglipVisionConfig,
                transformers.SiglipVisionModel, transformers.SiglipImageProcessor, transformers.AutoImageProcessor):
        original = cls.from_pretrained.__func__

        def redirected(klass, name, *a, _original=original, **kw):  # type: ignore[no-untyped-def]
            return _original(klass, local.get(str(name), name), *a, **kw)

        cls.from_pretrained = classmethod(redirected)

    from longvu.conversation import conv_templates
    from longvu.language_model.cambrian_qwen import CambrianQwenForCausalLM
    from longvu.mm_utils import expand2square, tokenizer_image_token
    from longvu.multimodal_encoder.siglip_encoder import SiglipVisionTower

    # Before loading, the reference assumes SigLIP so400m's width (1152): give it the tiny one's.
    siglip_width = json.loads((args.checkpoint / "siglip" / "config.json").read_text())["hidden_size"]
    init = SiglipVisionTower.__init__

    def tiny_init(self, *a, **kw):  # type: ignore[no-untyped-def]
        init(self, *a, **kw)
        if not self.is_loaded:
            self._hidden_size = siglip_width

    SiglipVisionTower.__init__ = tiny_init

    if args.write_videos:
        write_videos()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(args.checkpoint))
    model = CambrianQwenForCausalLM.from_pretrained(str(args.checkpoint), torch_dtype=torch.float32).eval()
    towers = model.get_model().get_vision_tower_aux_list()
    for tower in towers:
        if not tower.is_loaded:
            tower.load_model()
        tower.to(dtype=torch.float32)
    processors = [tower.image_processor for tower in towers]

    captured: dict[str, list[torch.Tensor]] = {}

    def record(name: str):  # type: ignore[no-untyped-def]
        def hook(module, inputs, output):  # type: ignore[no-untyped-def]
            captured.setdefault(name, []).append(output.detach().float().clone())
        return hook

    towers[0].register_forward_hook(record("siglip"))
    towers[-1].register_forward_hook(record("dino"))
    model.get_model().vision_sampler_0.register_forward_hook(record("sva"))

    conv = conv_templates["qwen"].copy()
    conv.append_message(conv.roles[0], "<image>\n" + QUESTION)
    conv.append_message(conv.roles[1], None)
    input_ids = tokenizer_image_token(conv.get_prompt(), tokenizer, -200, return_tensors="pt")[None]

    tensors: dict[str, torch.Tensor] = {}
    meta = {"question": QUESTION, "input_ids": json.dumps(input_ids[0].tolist()),
            "checkpoint_weights": weights_hash(args.checkpoint),
            "transformers": transformers.__version__, "torch": torch.__version__}
    for name, path in VIDEOS.items():
        captured.clear()
        frames = reference_frames(path)
        # The reference's process_images, without its .half().cuda(): goldens are float32 on CPU.
        images = []
        for processor in processors:
            try:
                side = processor.crop_size["height"]
            except (AttributeError, KeyError, TypeError):
                side = processor.size["height"]
            pad = tuple(int(x * 255) for x in processor.image_mean)
            images.append(torch.stack([
                processor.preprocess(expand2square(Image.fromarray(f), pad).resize((side, side)),
                                     return_tensors="pt")["pixel_values"][0] for f in frames]).unsqueeze(0))
        with torch.inference_mode():
            out = model.prepare_inputs_labels_for_multimodal(
                input_ids, None, None, None, None, images, image_sizes=[frames[0].shape[:2]])
            _, position_ids, attention_mask, _, embeds, _ = out[:6]
            logits = transformers.Qwen2ForCausalLM.forward(
                model, inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids).logits
        dino = torch.cat(captured["dino"])
        siglip = torch.cat(captured["siglip"])
        sva = torch.cat(captured["sva"]).reshape(-1, 144, captured["sva"][0].shape[-1])
        keep = slice(None) if name == "short" else slice(0, KEEP_ROWS)
        for tower, pixels in zip(("siglip", "dino"), images, strict=True):  # too big to keep: their hashes
            meta[f"{name}.pixels_{tower}"] = json.dumps([pixel_hash(p) for p in pixels[0]])
        tensors.update({
            f"{name}.dino": dino[keep].contiguous(), f"{name}.siglip": siglip[keep].contiguous(),
            f"{name}.sva": sva[keep].contiguous(), f"{name}.sva_last": sva[-KEEP_ROWS:].clone(),
            f"{name}.inputs_embeds": embeds[0].float().contiguous(), f"{name}.logits": logits[0, -1].float().contiguous(),
        })
        print(f"{name}: {len(frames)} frames, DINO {tuple(dino.shape)}, SigLIP {tuple(siglip.shape)}, "
              f"SVA {tuple(sva.shape)}, inputs_embeds {tuple(embeds.shape)}")
    save_file(tensors, str(HERE / "goldens.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
