"""Run the whole pipeline on one video and dump what the LLM receives.

    python -m models.dump_inputs --checkpoint DIR [--siglip DIR] [--dino DIR] \
        --video FILE --question TEXT --dump OUT.safetensors

The dump holds `siglip_pixels` and `dino_pixels` (the preprocessed input of every
sampled frame, in frame order), `kept_frame_indices`, `input_ids` (-200 where the
video goes) and `inputs_embeds`, with the per-step counts as JSON metadata.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file

from models.build import build_inputs, compression_summary
from models.model import load_longvu
from models.vision.encode import encode_video
from models.vision.frames import Frame, sample_frames
from models.vision.preprocess import DINO, SIGLIP


def recording(frames: Iterable[Frame], siglip: list[torch.Tensor], dino: list[torch.Tensor]) -> Iterator[Frame]:
    for frame in frames:
        siglip.append(SIGLIP([frame.rgb])[0])
        dino.append(DINO([frame.rgb])[0])
        yield frame


def dump_inputs(args: argparse.Namespace) -> dict[str, object]:
    model = load_longvu(args.checkpoint, args.siglip, args.dino, device=args.device)
    siglip: list[torch.Tensor] = []
    dino: list[torch.Tensor] = []
    encoded = encode_video(
        model, recording(sample_frames(args.video, args.sampling), siglip, dino), size_quirk=not args.no_size_quirk
    )
    built = build_inputs(model, encoded, args.question)
    with torch.inference_mode():
        logits = model.llm(inputs_embeds=built.inputs_embeds, logits_to_keep=1).logits[0, -1]
    counts = {
        **compression_summary(encoded, built),
        "prompt_tokens": built.prompt_tokens,
        "width": encoded.width,
        "height": encoded.height,
        "size_quirk": encoded.size_quirk,
        "model_fingerprint": model.fingerprint,
    }
    tensors = {
        "siglip_pixels": torch.stack(siglip),
        "dino_pixels": torch.stack(dino),
        "kept_frame_indices": built.frame_indices.cpu(),
        "input_ids": built.input_ids,
        "inputs_embeds": built.inputs_embeds[0].float().cpu(),
        "logits": logits.float().cpu(),  # the last prompt position: the first answer token's
    }
    save_file(tensors, str(args.dump), metadata={"counts": json.dumps(counts, sort_keys=True)})
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--siglip")
    parser.add_argument("--dino")
    parser.add_argument("--video", required=True, type=Path)
    parser.add_argument("--question", required=True)
    parser.add_argument("--dump", required=True, type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-size-quirk", action="store_true", help="read the frame size as (width, height)")
    parser.add_argument("--sampling", choices=("exact", "reference"), default="exact",
                        help="the 1-fps rule: ours, or the reference's index stepping")
    counts = dump_inputs(parser.parse_args())
    print(
        f"frames sampled {counts['frames_sampled']}, survived DINO {counts['frames_survived_dino']}, "
        f"used {counts['frames_used']}; regime {counts['regime']}"
        f"{' + STC' if counts['stc_applied'] else ''}; visual tokens {counts['visual_tokens_before']} -> "
        f"{counts['visual_tokens_after']}; prompt {counts['prompt_tokens']} tokens"
    )


if __name__ == "__main__":
    main()
