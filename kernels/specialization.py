"""Triton compiles a kernel once per specialisation of its integer arguments (equal to 1,
divisible by 16, neither), so an argument that changes from call to call (a video's frame
count, a question's token count) would compile new variants inside requests, on the
engine thread, stalling every answer for ~0.5-2 s. Our kernels mark those arguments
`do_not_specialize`; the ones left specialised are fixed by the model (its widths) and
compiled by the warm-up. This module names both and counts what has been compiled."""

from __future__ import annotations

from typing import Any

from kernels import dino_prune, int8_matmul, stc

KERNELS = {
    "dino_prune.gram_part": dino_prune._gram_part_kernel,
    "dino_prune.window_scores": dino_prune._window_scores_kernel,
    "stc.keep": stc._stc_keep_kernel,
    "stc.compact": stc._compact_kernel,
    "int8_matmul": int8_matmul._int8_matmul_kernel,
}
# Arguments fixed by the checkpoint (a tower's or the LLM's width: an int8 layer's n and k,
# the row strides of its contiguous input and output) or floats (never specialised).
FIXED_BY_MODEL = frozenset({"dim", "n_parts", "threshold", "n", "k", "stride_x", "stride_out"})


def argument_names(kernel: Any) -> list[str]:
    """A kernel's runtime arguments: not its pointers, not its constexprs."""
    names = kernel.arg_names if hasattr(kernel, "arg_names") else [p.name for p in kernel.params]
    constexprs = {p.name for p in getattr(kernel, "params", []) if p.is_constexpr}
    return [n for n in names if not n.endswith("_ptr") and not n.isupper() and n not in constexprs]


def unspecialized(kernel: Any) -> set[str]:
    """The arguments the kernel does not specialise on (compiled or interpreted)."""
    if hasattr(kernel, "params"):
        return {p.name for p in kernel.params if p.do_not_specialize}
    return set(kernel.kwargs.get("do_not_specialize") or ())


def compiled_variants() -> int:
    """Variants of our kernels compiled so far in this process, on every device (0 under
    the interpreter, which compiles nothing)."""
    total = 0
    for kernel in KERNELS.values():
        for cache in getattr(kernel, "device_caches", {}).values():
            total += len(cache[0])
    return total
