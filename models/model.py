"""A loaded LongVU model: config, tokenizer, LLM, connector and vision towers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.utils import logging as transformers_logging

from models import checkpoint
from models.config import LongVUConfig
from models.language import attention
from models.language.int8 import Weights, quantize_linears
from models.language.prompt import stop_token_ids
from models.language.sampling import GenerationDefaults
from models.vision.connector import Connector
from models.vision.staging import StagingPool
from models.vision.towers import DEFAULT_DINO, DEFAULT_SIGLIP, VisionTowers

CONNECTOR_PREFIX = "model."
CONNECTOR_ROOTS = ("mm_projector", "vision_sampler_", "vision_query", "image_newline")
NOT_LLM_CONFIG = {"model_type", "architectures", "auto_map", "_name_or_path", "transformers_version"}
# Towers bundled beside the weights (as `models.tiny` writes them) win over the hub ids.
BUNDLED_SIGLIP = "siglip"
BUNDLED_DINO = "dino"


@dataclass
class LongVU:
    config: LongVUConfig
    tokenizer: PreTrainedTokenizerBase
    llm: PreTrainedModel
    connector: Connector
    towers: VisionTowers
    device: torch.device
    dtype: torch.dtype
    fingerprint: str
    stop_ids: frozenset[int]  # end-of-turn tokens; read once, the vocabulary is large
    generation: GenerationDefaults  # the checkpoint's generation_config.json
    staging: StagingPool = field(default_factory=StagingPool)  # host blocks for frame uploads
    weights: Weights = "float"  # the LLM's linear layers: in `dtype`, or int8 (`models.language.int8`)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(ids.to(self.device))


def llm_classes(config: LongVUConfig) -> tuple[type, type]:
    return (LlamaConfig, LlamaForCausalLM) if config.is_llama else (Qwen2Config, Qwen2ForCausalLM)


def llm_config(config: LongVUConfig) -> LlamaConfig | Qwen2Config:
    """The LLM's transformers config, running our attention (`models.language.attention`)."""
    config_cls, _ = llm_classes(config)
    fields = {k: v for k, v in config.raw.items() if k not in NOT_LLM_CONFIG}
    return config_cls(**fields, attn_implementation=attention.NAME)


def is_connector_key(key: str) -> bool:
    return key.startswith(CONNECTOR_PREFIX) and key[len(CONNECTOR_PREFIX) :].startswith(CONNECTOR_ROOTS)


def default_dtype(device: torch.device) -> torch.dtype:
    """Float16 on a GPU, as the reference runs the model, the pixels and the connector."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _file_digest(path: Path, h: "hashlib._Hash") -> None:
    """Size plus the first and last 4 MiB: tells weight files apart without reading 15 GB."""
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with path.open("rb") as f:
        h.update(f.read(4 << 20))
        if size > 8 << 20:
            f.seek(-(4 << 20), 2)
            h.update(f.read())


def fingerprint(directories: list[Path]) -> str:
    h = hashlib.sha256()
    for directory in directories:
        for path in sorted(directory.iterdir()):
            if path.is_file() and path.suffix in (".json", ".safetensors"):  # generation_config.json too
                _file_digest(path, h)
    return h.hexdigest()[:16]


def _tower_path(explicit: str | None, ckpt_dir: Path, bundled: str, default: str) -> str:
    if explicit:
        return explicit
    local = ckpt_dir / bundled
    return str(local) if local.is_dir() else default


def load_longvu(
    checkpoint_path: str,
    siglip_path: str | None = None,
    dino_path: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    weights: Weights = "float",
) -> LongVU:
    # transformers' loader reads the LLM's keys and ours the connector's (checked below),
    # so its notes about unused keys and the foreign model_type are noise.
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    ckpt_dir = checkpoint.resolve(checkpoint_path)
    config = LongVUConfig.from_file(ckpt_dir / "config.json")

    siglip_dir = checkpoint.resolve(_tower_path(siglip_path, ckpt_dir, BUNDLED_SIGLIP, DEFAULT_SIGLIP))
    dino_dir = checkpoint.resolve(_tower_path(dino_path, ckpt_dir, BUNDLED_DINO, DEFAULT_DINO))
    towers = VisionTowers.load(str(siglip_dir), str(dino_dir), config.aux_side, dtype, device)

    _, llm_cls = llm_classes(config)
    llm_fields = llm_config(config)
    with torch.device("meta"):
        connector_shape = Connector(config, towers.hidden_sizes)
        llm_shape = llm_cls(llm_fields)
    expected = checkpoint.expected_shapes(connector_shape, CONNECTOR_PREFIX)
    expected.update(checkpoint.expected_shapes(llm_shape))
    if llm_fields.tie_word_embeddings:
        expected.pop("lm_head.weight", None)

    files = checkpoint.weight_files(ckpt_dir)
    checkpoint.check_keys(expected, checkpoint.tensor_shapes(files))

    connector = Connector(config, towers.hidden_sizes)
    connector_keys = [k for k in files if is_connector_key(k)]
    state = checkpoint.load_tensors(files, connector_keys, CONNECTOR_PREFIX, torch.device("cpu"), dtype)
    connector.load_state_dict(state, strict=True)
    connector = connector.to(device=device, dtype=dtype).eval()

    llm = llm_cls.from_pretrained(str(ckpt_dir), config=llm_fields, dtype=dtype).to(device).eval()
    if weights == "int8":
        quantize_linears(llm)  # on the device: the float weights are the peak, as without int8
    tokenizer = AutoTokenizer.from_pretrained(str(ckpt_dir))
    generation = GenerationDefaults.from_dir(ckpt_dir)

    for module in (llm, connector, towers.siglip, towers.dino):
        module.requires_grad_(False)
    return LongVU(
        config=config,
        tokenizer=tokenizer,
        llm=llm,
        connector=connector,
        towers=towers,
        device=device,
        dtype=dtype,
        fingerprint=fingerprint([ckpt_dir, siglip_dir, dino_dir]),
        stop_ids=frozenset(stop_token_ids(tokenizer)) | frozenset(generation.eos_token_ids),
        generation=generation,
        weights=weights,
    )

