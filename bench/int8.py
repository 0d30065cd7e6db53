"""How close int8 weights stay to float: the agreement table of the README.

    python bench/int8.py                 # the tiny checkpoint, and Qwen2-7B widths at 1 layer
    python bench/int8.py --layers 1 2 4  # more decoder layers of the 7B's widths (about 10 s a layer on 2 cores)

Each row runs one prompt of random tokens through the float model and through its int8 copy
(`models.language.int8`, as LONGVU_LLM_WEIGHTS=int8 loads it) and compares the logits at every
position (`models.language.int8.agreement`): how often the greedy token is the same, the same where
float's top token leads by at least 0.2 of that position's logit spread, and the cosine
similarity of the logits. Random weights, nothing downloaded.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.released import QWEN2_7B  # noqa: E402
from models.language.int8 import Agreement, quantized_agreement  # noqa: E402
from models.model import load_longvu  # noqa: E402
from models.tiny import write_tiny_checkpoint  # noqa: E402


def compare(llm: torch.nn.Module, positions: int) -> Agreement:
    ids = torch.randint(0, llm.config.vocab_size, (1, positions), generator=torch.Generator().manual_seed(0))
    return quantized_agreement(llm, ids)


def row(name: str, positions: int, seen: Agreement) -> str:
    return (f"| {name} | {positions} | {seen.top1:.1%} | {seen.decided_top1:.1%} ({seen.decided:.0%} of positions) "
            f"| {seen.cosine_min:.5f}, {seen.cosine_mean:.5f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="+", default=[1], help="decoder layers at the 7B's widths")
    parser.add_argument("--positions", type=int, default=256, help="prompt positions at the 7B's widths")
    args = parser.parse_args()
    print("| model | positions | top-1 agrees | where float's top-1 leads by >= 0.2 of its logits' std "
          "| logits' cosine (worst, mean) |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tiny = load_longvu(str(write_tiny_checkpoint(Path(tmp))))
    print(row("tiny checkpoint", 4096, compare(copy.deepcopy(tiny.llm), 4096)), flush=True)
    widths = {k: v for k, v in QWEN2_7B.items() if k not in ("vision_hidden_size", "num_hidden_layers")}
    for layers in args.layers:
        torch.manual_seed(0)
        llm = Qwen2ForCausalLM(Qwen2Config(**widths, num_hidden_layers=layers)).eval()
        print(row(f"Qwen2-7B widths, {layers} layer(s), {widths['vocab_size']:,}-token head", args.positions,
                  compare(llm, args.positions)), flush=True)
        del llm


if __name__ == "__main__":
    main()
