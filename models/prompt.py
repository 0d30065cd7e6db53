"""The chat prompt around the video (SPEC section 1, step 9)."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from models.config import LongVUConfig

IMAGE_TOKEN = "<image>"
IMAGE_TOKEN_INDEX = -200
QWEN_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n"
)
STOP_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>")


def prompt_text(tokenizer: PreTrainedTokenizerBase, config: LongVUConfig, question: str) -> str:
    if config.is_llama:
        messages = [{"role": "user", "content": f"{IMAGE_TOKEN}\n{question}"}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return QWEN_TEMPLATE.format(question=question)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, config: LongVUConfig, question: str) -> list[int]:
    """Token ids of the prompt with IMAGE_TOKEN_INDEX where the video goes.

    Only the template's `<image>` becomes the placeholder: the question is tokenized as
    text, so a question that contains "<image>" cannot inject a second video slot.
    """
    before, after = prompt_text(tokenizer, config, "\0").split("\0")
    head, tail = before.split(IMAGE_TOKEN, 1)
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    return encode(head) + [IMAGE_TOKEN_INDEX] + encode(tail + question + after)


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    vocab = tokenizer.get_vocab()
    ids = {vocab[token] for token in STOP_TOKENS if token in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
