"""Time the DINO-pruning and STC ops at production sizes: Triton kernels vs PyTorch references.

    python bench/kernels.py            # on a GPU: both paths, GB/s next to a device copy
    python bench/kernels.py --cpu      # no GPU: the reference (CPU) path only

DINO pruning: 3600 frames x 576 x 1536 in bf16, fed 64 frames (four windows) at a time
as the pipeline does. STC: 400 frames x 156 tokens x 3584 in bf16. Bytes counted are
the ones each op must move: DINO reads every feature once; STC reads every token once
and writes the kept ones. Targets on an H100/H200: each kernel at 70% or more of the
copy bandwidth and 3x or more faster than the reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels.dino_prune import window_prune_reference, window_prune_triton  # noqa: E402
from kernels.stc import stc_reference, stc_triton  # noqa: E402

DINO_FRAMES, DINO_TOKENS, DINO_DIM, DINO_BATCH = 3600, 576, 1536, 64
STC_FRAMES, STC_TOKENS, STC_DIM = 400, 156, 3584


def timed(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    fn()  # warm-up (compilation, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def copy_bandwidth(device: torch.device) -> float:
    src = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), device, 10)
    return 2 * src.numel() / seconds / 1e9


def dino_case(device: torch.device, dtype: torch.dtype) -> tuple[Callable[[Callable], Callable[[], object]], int]:
    batch = torch.randn(DINO_BATCH, DINO_TOKENS, DINO_DIM, device=device).to(dtype)
    batches = DINO_FRAMES // DINO_BATCH + (DINO_FRAMES % DINO_BATCH > 0)

    def run(op: Callable) -> Callable[[], object]:
        def all_batches() -> None:
            for _ in range(batches):
                op(batch, 0.83)
        return all_batches

    return run, DINO_FRAMES * DINO_TOKENS * DINO_DIM * batch.element_size()


def stc_case(device: torch.device, dtype: torch.dtype) -> tuple[Callable[[Callable], Callable[[], object]], int]:
    base = torch.randn(1, STC_TOKENS, STC_DIM, device=device)
    tokens = (base + torch.rand(STC_FRAMES, 1, 1, device=device) * torch.randn(
        STC_FRAMES, STC_TOKENS, STC_DIM, device=device)).to(dtype)
    kept = int(stc_reference(tokens, 0.7)[0].sum())
    return (lambda op: lambda: op(tokens, 0.7)), (tokens.numel() + kept * STC_DIM) * tokens.element_size()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="time the reference path on the CPU")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cpu" if args.cpu or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, dtype {dtype}")
    if device.type == "cuda":
        print(f"device-to-device copy: {copy_bandwidth(device):.0f} GB/s")
    print(f"{'op':>12} {'path':>10} {'ms':>10} {'GB/s':>8} {'speed-up':>9}")
    cases = {"dino prune": (dino_case, window_prune_reference, window_prune_triton),
             "stc": (stc_case, stc_reference, stc_triton)}
    for name, (case, reference, kernel) in cases.items():
        run, nbytes = case(device, dtype)
        ref_s = timed(run(reference), device, args.repeat)
        print(f"{name:>12} {'torch':>10} {ref_s * 1e3:>10.1f} {nbytes / ref_s / 1e9:>8.1f} {'':>9}")
        if device.type == "cuda":
            tri_s = timed(run(kernel), device, args.repeat)
            print(f"{name:>12} {'triton':>10} {tri_s * 1e3:>10.1f} {nbytes / tri_s / 1e9:>8.1f} "
                  f"{ref_s / tri_s:>8.1f}x")


if __name__ == "__main__":
    main()
