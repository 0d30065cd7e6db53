"""A yes/no question's score from one prefill: P(yes) / (P(yes) + P(no)) over the first
answer token, the softmax over the two tokens that open an answer "Yes" and one "No".

Moments and watches score a window of video this way: one forward over the prompt, no
decoding, and a number a threshold can be put on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

YES, NO = "Yes", "No"  # how an answer opens after the chat template's "assistant\n"


def question(query: str) -> str:
    return f"Does this part of the video show the following: {query}? Answer yes or no."


@dataclass(frozen=True)
class YesNo:
    yes: int
    no: int

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerBase) -> YesNo:
        """The first token of each spelling (one token in the released vocabularies)."""
        yes, no = (tokenizer(word, add_special_tokens=False).input_ids[0] for word in (YES, NO))
        if yes == no:
            raise ValueError(f"the tokenizer opens {YES!r} and {NO!r} with the same token ({yes})")
        return cls(yes, no)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """[n, vocab] last-position logits -> [n] float32 scores in [0, 1]."""
        pair = logits[:, [self.yes, self.no]].float()
        return torch.softmax(pair, dim=-1)[:, 0]
