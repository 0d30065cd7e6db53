"""One decode step's attention at Qwen2-7B's head layout, before and after grouped-query
attention without copies (one layer; the model runs 28 of them per token).

    python bench/gqa.py                  # 16 rows x 8k positions, 28 query / 4 KV heads, head 128
    python bench/gqa.py --rows 1 --positions 4096 --dtype bfloat16

Three ways over the same cache and window mask, each timed over several runs (median):
- `repeat_kv`: the keys and values widened to the query heads, then masked SDPA (the
  decode path a masked step takes in transformers before 5.x's single-query packing, and
  our continued prefill pieces on main);
- transformers' `sdpa_attention_forward` as installed (what decode called on main);
- ours, `models.language.attention.grouped_attention` (query heads folded onto their KV head).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward  # noqa: E402

from models.language.attention import grouped_attention  # noqa: E402


def timed(fn, runs: int, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--positions", type=int, default=8192)
    parser.add_argument("--heads", type=int, default=28)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype)
    groups = args.heads // args.kv_heads
    gen = torch.Generator(device=device).manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device=device, dtype=dtype)

    q = rand(args.rows, args.heads, 1, args.head_dim)
    k, v = rand(args.rows, args.kv_heads, args.positions, args.head_dim), rand(args.rows, args.kv_heads,
                                                                                 args.positions, args.head_dim)
    filled = torch.randint(args.positions // 2, args.positions, (args.rows,), generator=gen, device=device)
    mask = (torch.arange(args.positions, device=device)[None, :] <= filled[:, None])[:, None, None, :]
    module = SimpleNamespace(num_key_value_groups=groups, is_causal=True)

    ways = {
        "repeat_kv + SDPA": lambda: F.scaled_dot_product_attention(q, repeat_kv(k, groups), repeat_kv(v, groups),
                                                                   attn_mask=mask),
        "transformers sdpa_attention_forward": lambda: sdpa_attention_forward(module, q, k, v, mask)[0],
        "ours: grouped_attention": lambda: grouped_attention(q, k, v, mask, None),
    }
    reference = ways["repeat_kv + SDPA"]()
    kv_bytes = 2 * k.numel() * k.element_size()
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}, {args.dtype}: {args.rows} rows x {args.positions} positions, {args.heads} query / "
          f"{args.kv_heads} KV heads, head {args.head_dim}; the cache's K+V {kv_bytes / 1e6:.0f} MB a layer")
    print("| attention | step time (one layer) | K+V bytes touched | max abs diff |")
    print("|---|---|---|---|")
    for label, fn in ways.items():
        seconds = timed(fn, args.runs, device)
        touched = kv_bytes * (1 + 2 * groups) if label.startswith("repeat_kv") else kv_bytes
        diff = (fn().reshape(reference.shape).float() - reference.float()).abs().max().item()
        print(f"| {label} | {seconds * 1e3:.2f} ms | {touched / 1e9:.2f} GB | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
