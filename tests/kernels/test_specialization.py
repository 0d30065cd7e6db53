"""No kernel compiles inside a request: the arguments that vary between calls are not
specialised, so the warm-up's variants serve every size."""

from __future__ import annotations

import pytest
import torch

from kernels.dino_prune import window_prune
from kernels.int8_matmul import int8_matmul
from kernels.specialization import FIXED_BY_MODEL, KERNELS, argument_names, compiled_variants, unspecialized
from kernels.stc import stc


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_argument_that_varies_is_unspecialised(name: str) -> None:
    kernel = KERNELS[name]
    varying = set(argument_names(kernel)) - FIXED_BY_MODEL
    assert varying, "a kernel with nothing that varies needs no entry"
    assert varying <= unspecialized(kernel), f"{name} specialises on {sorted(varying - unspecialized(kernel))}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiling needs a GPU (the interpreter compiles nothing)")
def test_odd_and_even_sizes_compile_nothing_after_the_first_call() -> None:
    def run(frames: int, tokens: int) -> None:
        # A model's DINO maps have one shape; its STC frames two token counts (high and low
        # resolution) of one width.
        window_prune(torch.randn(frames, 9, 24, device="cuda", dtype=torch.float16), 0.83)
        stc(torch.randn(frames, tokens, 64, device="cuda", dtype=torch.float16), 0.5)
        # An int8 layer: a decode step's rows, or a short prefill's (a prompt after its cached prefix).
        int8_matmul(torch.randn(min(frames, 64), 96, device="cuda", dtype=torch.float16), weight, scale)

    weight = torch.randint(-127, 128, (80, 96), dtype=torch.int8, device="cuda")
    scale = torch.rand(80, device="cuda")
    run(16, 16)  # the warm-up's call
    warm = compiled_variants()
    for frames, tokens in ((1, 1), (17, 5), (37, 16), (64, 33), (3, 144)):
        run(frames, tokens)
    torch.cuda.synchronize()
    assert compiled_variants() == warm
