"""Which implementation of an op runs: the Triton kernel on CUDA tensors (and on CPU
tensors under TRITON_INTERPRET=1, for the tests), the PyTorch reference otherwise."""

from __future__ import annotations

import os
from typing import Literal

import torch

Backend = Literal["auto", "triton", "torch"]


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def use_triton(tensor: torch.Tensor, backend: Backend = "auto") -> bool:
    if backend == "torch":
        return False
    if backend == "triton":
        return True
    return tensor.is_cuda or interpreting()
