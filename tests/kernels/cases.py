"""Random inputs for comparing kernels with their references."""

import torch

# Triton runs compiled on a GPU box and in the interpreter (TRITON_INTERPRET=1) without one:
# it cannot do both in one process, so the kernels are tested on the one device there is.
DEVICES = ["cuda"] if torch.cuda.is_available() else ["cpu"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def correlated(n: int, *shape: int, seed: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """Frames around a common base with noise of random strength: similarities that
    spread across the thresholds instead of all being ~0 or ~1."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(1, *shape, generator=gen)
    strength = torch.rand(n, *([1] * len(shape)), generator=gen) * 2.0
    x = base + strength * torch.randn(n, *shape, generator=gen)
    return x.to(dtype=dtype, device=device)
