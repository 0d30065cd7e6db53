"""The chat prompt around the video (SPEC section 1, step 9)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from transformers import PreTrainedTokenizerBase

from models.config import LongVUConfig

IMAGE_TOKEN = "<image>"
IMAGE_TOKEN_INDEX = -200
LLAMA_SYSTEM = "You are a helpful assistant."  # the reference's llama3 conversation template
QWEN_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n"
)
STOP_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>")


@dataclass(frozen=True)
class Turn:
    """One message of a conversation; `video` marks the turn the video opens."""

    role: Literal["system", "user", "assistant"]
    text: str
    video: bool = False


Conversation = Sequence[Turn]
# Marks the video's place in the rendered prompt; removed from every text first, so no
# text (whatever "<image>" or other marker it holds) can open a second video slot.
VIDEO_MARK = "\0"


def render(tokenizer: PreTrainedTokenizerBase, config: LongVUConfig, turns: Conversation) -> str:
    """The prompt text, VIDEO_MARK where the video goes. One user question on a Qwen
    checkpoint takes the reference's template; anything else the checkpoint's chat template,
    Llama with the reference's system text unless the conversation has its own."""
    if sum(t.video for t in turns) != 1:
        raise ValueError("a conversation holds exactly one video")
    clean = [Turn(t.role, t.text.replace(VIDEO_MARK, ""), t.video) for t in turns]
    if not config.is_llama and len(clean) == 1 and clean[0].role == "user":
        return QWEN_TEMPLATE.replace(IMAGE_TOKEN, VIDEO_MARK).format(question=clean[0].text)
    if config.is_llama and clean[0].role != "system":
        clean.insert(0, Turn("system", LLAMA_SYSTEM))
    messages = [{"role": t.role, "content": f"{VIDEO_MARK}\n{t.text}" if t.video else t.text} for t in clean]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, config: LongVUConfig, question: str | Conversation) -> list[int]:
    """Token ids of the prompt with IMAGE_TOKEN_INDEX where the video goes. A plain
    question is one user turn that opens with the video."""
    turns = [Turn("user", question, video=True)] if isinstance(question, str) else question
    head, tail = render(tokenizer, config, turns).split(VIDEO_MARK)
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    return encode(head) + [IMAGE_TOKEN_INDEX] + encode(tail)


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    vocab = tokenizer.get_vocab()
    ids = {vocab[token] for token in STOP_TOKENS if token in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
