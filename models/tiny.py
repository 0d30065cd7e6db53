"""Write a tiny random-weight LongVU checkpoint in the released on-disk format.

    python -m models.tiny OUT_DIR

OUT_DIR gets `config.json` (`cambrian_qwen`), `generation_config.json`, `model.safetensors` with the real key
names, a byte-level BPE tokenizer with the Qwen chat tokens and template, and tiny
SigLIP and DINOv2 towers under `OUT_DIR/siglip` and `OUT_DIR/dino`, which
`load_longvu` picks up when no tower is named. Everything comes from a fixed seed,
so two runs write identical bytes. The token geometry is the real one (27x27 tower
maps resized to 24x24, 12x12 queries, 8x8 low resolution, an 8192-token context);
only the widths and depths are small.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Dinov2Config,
    Dinov2Model,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from models.config import LongVUConfig
from models.model import BUNDLED_DINO, BUNDLED_SIGLIP
from models.vision.connector import Connector

SEED = 0
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "What is happening in this video? Describe the scene in detail.",
    "A person walks across the room, picks up a red ball and throws it to a dog.",
    "The camera pans over a city at night; cars move along the bright streets.",
    "How many people appear in the video, and what are they wearing?",
    "Answer with the option's letter from the given choices directly.",
    "You are a helpful assistant. The video shows a kitchen, a table and two chairs.",
] * 4

SIGLIP_CONFIG = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
    image_size=384, patch_size=14,
)
DINO_CONFIG = dict(
    hidden_size=48, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
    image_size=518, patch_size=14, use_swiglu_ffn=True,
)
LONGVU_CONFIG = dict(
    architectures=["CambrianQwenForCausalLM"],
    model_type="cambrian_qwen",
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,  # head size 32: the smallest vLLM's CPU attention takes
    num_key_value_heads=1,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    hidden_act="silu",
    tie_word_embeddings=False,
    torch_dtype="float32",
    connector_depth=3,
    connector_only=True,
    dino_threshold=0.83,
    drop_threshold=0.7,
    frame_pos=False,
    highres=True,
    image_aspect_ratio="pad",
    image_token_len=144,
    is_image_newline=True,
    lowres_token=8,
    mm_projector_type="sva",
    mm_use_im_patch_token=False,
    mm_use_im_start_end=False,
    mm_vision_select_feature="patch",
    mm_vision_select_layer=-1,
    mm_vision_tower_aux_list=["siglip/CLIP-ViT-SO400M-14-384", "facebook/dinov2-giant-res378-interp576"],
    mm_vision_tower_aux_token_len_list=[576, 576],
    num_query_group=1,
    query_num_list=[144],
    tokenizer_model_max_length=8192,
    tokenizer_padding_side="right",
    vision_hidden_size=64,
    use_cache=True,
)
SIGLIP_PREPROCESSOR = {
    "image_processor_type": "SiglipImageProcessor", "do_resize": True, "resample": 3,
    "size": {"height": 384, "width": 384}, "do_rescale": True, "rescale_factor": 1 / 255,
    "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}
DINO_PREPROCESSOR = {
    "image_processor_type": "BitImageProcessor", "do_resize": True, "resample": 3,
    "size": {"shortest_edge": 378}, "do_center_crop": True, "crop_size": {"height": 378, "width": 378},
    "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
}


def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=8192,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def portable_tokenizer_files(out_dir: Path) -> None:
    """Files that transformers 4.x (the reference's pin) reads too, as the released ones:
    a generic fast tokenizer class, and BPE merges as "a b" strings (newer tokenizers
    write pairs, which older ones cannot read)."""
    config_path, tokenizer_path = out_dir / "tokenizer_config.json", out_dir / "tokenizer.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    spec = json.loads(tokenizer_path.read_text())
    spec["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    tokenizer_path.write_text(json.dumps(spec, ensure_ascii=False, indent=2) + "\n")


def write_tower(model: torch.nn.Module, directory: Path, preprocessor: dict, prefix: str = "") -> None:
    """Config, processor and weights; `prefix` names the weights as the released checkpoint
    does (SigLIP's hub weights sit under `vision_model.`, which transformers 4.x requires)."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    if prefix:
        weights = directory / "model.safetensors"
        state = load_file(str(weights))
        save_file({prefix + k: v for k, v in state.items()}, str(weights), metadata={"format": "pt"})
    _json(directory / "preprocessor_config.json", preprocessor)


def write_tiny_checkpoint(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    siglip = SiglipVisionModel(SiglipVisionConfig(**SIGLIP_CONFIG))
    dino = Dinov2Model(Dinov2Config(**DINO_CONFIG))
    write_tower(siglip, out_dir / BUNDLED_SIGLIP, SIGLIP_PREPROCESSOR, prefix="vision_model.")
    write_tower(dino, out_dir / BUNDLED_DINO, DINO_PREPROCESSOR)

    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(str(out_dir))
    portable_tokenizer_files(out_dir)
    raw = dict(LONGVU_CONFIG, vocab_size=len(tokenizer),
               bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    _json(out_dir / "config.json", raw)
    # As Qwen2-Instruct's, so that the defaults it brings (a repetition penalty even when
    # greedy, top-k and top-p when sampling, two end tokens) are exercised.
    _json(out_dir / "generation_config.json", {
        "do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05,
        "eos_token_id": [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
    })

    config = LongVUConfig.from_dict(raw)
    llm_fields = {k: v for k, v in raw.items() if k not in ("model_type", "architectures")}
    llm = Qwen2ForCausalLM(Qwen2Config(**llm_fields))
    connector = Connector(config, (SIGLIP_CONFIG["hidden_size"], DINO_CONFIG["hidden_size"]))
    # Parameters the reference creates with randn / empty; random here so every path matters.
    for name, param in connector.named_parameters():
        if name.endswith(("vision_query", "image_newline")) or ".pos_embed_" in name:
            torch.nn.init.normal_(param, std=0.5)
        elif name.endswith(".weight") and param.dim() == 2:
            torch.nn.init.normal_(param, std=param.shape[1] ** -0.5)

    tensors = {k: v.contiguous() for k, v in llm.state_dict().items()}
    tensors.update({f"model.{k}": v.contiguous() for k, v in connector.state_dict().items()})
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return out_dir


def word_token_ids(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Tokens that are a whole word of the corpus after a space."""
    words = {w for line in CORPUS for w in re.findall(r"[A-Za-z]+", line) if len(w) > 1}
    return sorted(i for token, i in tokenizer.get_vocab().items() if token.startswith("\u0120") and token[1:] in words)


def write_demo_checkpoint(out_dir: Path) -> Path:
    """The tiny checkpoint with an output head that speaks in words: only the rows of whole
    words and the end of turn are left, scaled so that one of them wins, and a strong
    repetition penalty, so that the demo's greedy answers read as random words (not as
    bytes that decode to broken UTF-8, nor one word over and over)."""
    out_dir = write_tiny_checkpoint(out_dir)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(out_dir))
    weights = out_dir / "model.safetensors"
    tensors = load_file(str(weights))
    keep = [*word_token_ids(tokenizer), tokenizer.convert_tokens_to_ids("<|im_end|>")]
    head = torch.zeros_like(tensors["lm_head.weight"])
    head[keep] = tensors["lm_head.weight"][keep] * 30.0
    tensors["lm_head.weight"] = head
    save_file(tensors, str(weights), metadata={"format": "pt"})
    generation = json.loads((out_dir / "generation_config.json").read_text())
    _json(out_dir / "generation_config.json", dict(generation, repetition_penalty=5.0))
    return out_dir


def write_overflow_checkpoint(out_dir: Path) -> Path:
    """The tiny checkpoint with an output head whose weights float16 holds (at most about 5e4) but
    whose logits it does not (about 5e5, past its 65504): as a real model whose activations
    outgrow float16 on a long video. Its answers are finite in float32 and bfloat16."""
    out_dir = write_tiny_checkpoint(out_dir)
    weights = out_dir / "model.safetensors"
    tensors = load_file(str(weights))
    tensors["lm_head.weight"] = tensors["lm_head.weight"] * 5e5
    save_file(tensors, str(weights), metadata={"format": "pt"})
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    out = write_tiny_checkpoint(args.out_dir)
    print(f"tiny LongVU checkpoint written to {out} (towers in {out / BUNDLED_SIGLIP}, {out / BUNDLED_DINO})")


if __name__ == "__main__":
    main()
