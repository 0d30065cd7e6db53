"""A LongVU checkpoint's language model as a plain Hugging Face checkpoint, for `vllm serve`.

    python -m models.export_llm --checkpoint Vision-CAIR/LongVU_Qwen2_7B --out /models/longvu-llm

The output is what `Qwen2ForCausalLM` (or `LlamaForCausalLM`) loads on its own: a config
of that architecture, the LLM's weights under their standard names (shards as in the
source), the tokenizer and `generation_config.json`. Strict, as our loader is: every
source key is either the LLM's or the connector's (left out), and every LLM key is
there with its shape; anything else fails, named.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoTokenizer
from transformers.utils import logging as transformers_logging

from models import checkpoint
from models.config import LongVUConfig
from models.model import NOT_LLM_CONFIG, is_connector_key, llm_classes

GENERATION_CONFIG = "generation_config.json"


def export_llm(checkpoint_path: str, out_dir: Path) -> Path:
    transformers_logging.set_verbosity_error()  # its note on the foreign model_type is noise here
    source = checkpoint.resolve(checkpoint_path)
    config = LongVUConfig.from_file(source / "config.json")
    config_cls, llm_cls = llm_classes(config)
    llm_config = config_cls(**{k: v for k, v in config.raw.items() if k not in NOT_LLM_CONFIG},
                            architectures=[llm_cls.__name__])
    with torch.device("meta"):
        expected = checkpoint.expected_shapes(llm_cls(llm_config))
    if llm_config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)

    files = checkpoint.weight_files(source)
    found = checkpoint.tensor_shapes(files)
    llm_keys = {key: shape for key, shape in found.items() if not is_connector_key(key)}
    checkpoint.check_keys(expected, llm_keys)

    out_dir.mkdir(parents=True, exist_ok=True)
    by_file: dict[Path, list[str]] = {}
    for key in sorted(llm_keys):
        by_file.setdefault(files[key], []).append(key)
    names = {path: path.name if len(by_file) > 1 else checkpoint.SINGLE_FILE for path in by_file}
    for path, keys in by_file.items():
        with safe_open(str(path), framework="pt") as f:
            tensors = {key: f.get_tensor(key).contiguous() for key in keys}
        save_file(tensors, str(out_dir / names[path]), metadata={"format": "pt"})
    if len(by_file) > 1:
        index = {"metadata": {}, "weight_map": {key: names[path] for path, keys in by_file.items() for key in keys}}
        (out_dir / checkpoint.SHARD_INDEX).write_text(json.dumps(index, indent=2))

    llm_config.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(out_dir))
    if (source / GENERATION_CONFIG).exists():
        shutil.copyfile(source / GENERATION_CONFIG, out_dir / GENERATION_CONFIG)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a LongVU checkpoint: hub id or local directory")
    parser.add_argument("--out", required=True, type=Path, help="the directory to write")
    args = parser.parse_args()
    out = export_llm(args.checkpoint, args.out)
    print(f"language model of {args.checkpoint} written to {out}")


if __name__ == "__main__":
    main()
