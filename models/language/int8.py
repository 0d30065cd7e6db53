"""Weight-only int8 for the language model (`LONGVU_LLM_WEIGHTS=int8`).

Every linear layer of the LLM (the attention and MLP projections of each decoder layer and
the LM head) keeps its weight as int8 with one float32 scale per output channel: symmetric,
`scale = max|w| / 127` over the row, `q = round(w / scale)`. Activations, biases, norms and
the embedding table stay in the model dtype, and so do the vision towers and the connector.
Half the bytes of float16 per decode step and per card: `kernels.int8_matmul` reads them
as int8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from kernels.int8_matmul import int8_matmul

Weights = Literal["float", "int8"]
QMAX = 127
ROWS_AT_ONCE = 4096  # float32 rows widened at a time: Qwen2-7B's head whole would take 2.2 GB more at load


class Int8Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype,
                 device: torch.device | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scale", torch.ones(out_features, dtype=torch.float32, device=device))
        self.register_parameter("bias", nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device),
                                                     requires_grad=False) if bias else None)

    @classmethod
    def quantize(cls, linear: nn.Linear) -> Int8Linear:
        weight = linear.weight.detach()
        out = cls(linear.in_features, linear.out_features, linear.bias is not None, weight.dtype, weight.device)
        for start in range(0, weight.shape[0], ROWS_AT_ONCE):
            wide = weight[start : start + ROWS_AT_ONCE].float()
            scale = wide.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / QMAX
            out.qweight[start : start + ROWS_AT_ONCE] = torch.round(wide / scale[:, None]).clamp_(-QMAX, QMAX)
            out.scale[start : start + ROWS_AT_ONCE] = scale
        if linear.bias is not None:
            out.bias.data.copy_(linear.bias.detach())
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = int8_matmul(x.reshape(-1, self.in_features), self.qweight, self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_linears(llm: nn.Module) -> int:
    """Replace every `nn.Linear` in the LLM by its `Int8Linear`, one at a time (each float
    weight is freed as its int8 copy is made); returns how many. A head tied to the
    embedding gets an int8 copy of its own: the embedding table stays float."""
    names = [name for name, module in llm.named_modules() if isinstance(module, nn.Linear)]
    for name in names:  # by name: no list holds the float layers once they are replaced
        parent, _, child = name.rpartition(".")
        setattr(llm.get_submodule(parent), child, Int8Linear.quantize(llm.get_submodule(name)))
    if getattr(llm.config, "tie_word_embeddings", False):
        llm.config.tie_word_embeddings = False  # transformers must not tie them back
    return len(names)


@dataclass(frozen=True)
class Agreement:
    """int8 logits against float ones over the positions of one prompt."""

    top1: float  # share of positions whose greedy token is the same
    decided_top1: float  # the same, where float's top-1 leads by >= DECIDED of its logits' spread
    decided: float  # share of positions that are decided
    cosine_min: float  # the logits' cosine similarity, worst position
    cosine_mean: float


DECIDED = 0.2  # of a position's logit standard deviation: ~0.25 at the 7B's width, 4x int8's noise there


def agreement(reference: torch.Tensor, quantized: torch.Tensor) -> Agreement:
    """[positions, vocab] logits of the float model and of its int8 copy.

    Random weights give flat logits: over Qwen2's 152k tokens the top two are often tied to
    within the quantisation noise, where either answer is the model's; a trained model's
    greedy token usually leads by whole logits. `decided_top1` asks what matters there."""
    a, b = reference.float(), quantized.float()
    same = a.argmax(-1) == b.argmax(-1)
    top2 = a.topk(2, dim=-1).values
    decided = top2[:, 0] - top2[:, 1] >= DECIDED * a.std(dim=-1)
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return Agreement(top1=same.float().mean().item(), decided_top1=same[decided].float().mean().item(),
                     decided=decided.float().mean().item(), cosine_min=cosine.min().item(),
                     cosine_mean=cosine.mean().item())


def quantized_agreement(llm: nn.Module, ids: torch.Tensor) -> Agreement:
    """The float LLM's logits for `ids` [1, L] against its own, once quantised in place."""
    with torch.inference_mode():
        reference = llm(input_ids=ids).logits[0]
        quantize_linears(llm)
        return agreement(reference, llm(input_ids=ids).logits[0])
