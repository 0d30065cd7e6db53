"""The LongVU checkpoint's `config.json`, read into a typed object.

Every pipeline default of SPEC section 1 comes from here; the fallbacks are the
released `LongVU_Qwen2_7B` values and the reference code's `getattr` defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUPPORTED_MODEL_TYPES = ("cambrian_qwen", "cambrian_llama")


@dataclass(frozen=True)
class LongVUConfig:
    model_type: str
    hidden_size: int
    vision_hidden_size: int = 1024
    query_num_list: tuple[int, ...] = (144,)
    connector_depth: int = 3
    image_token_len: int = 144
    lowres_token: int = 8
    highres: bool = True
    dino_threshold: float = 0.83
    drop_threshold: float = 0.7
    tokenizer_model_max_length: int = 8192
    inference_max_length: int = 16
    aux_token_len_list: tuple[int, ...] = (576, 576)
    mm_projector_type: str = "sva"
    connector_only: bool = True
    # The whole config.json, for building the transformers LLM config.
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_llama(self) -> bool:
        return "llama" in self.model_type

    @property
    def query_side(self) -> int:
        return int(self.query_num_list[0] ** 0.5)

    @property
    def final_side(self) -> int:
        return int(self.image_token_len**0.5)

    @property
    def aux_side(self) -> int:
        return int(self.aux_token_len_list[0] ** 0.5)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "LongVUConfig":
        model_type = raw.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"unsupported model_type {model_type!r}; expected one of {SUPPORTED_MODEL_TYPES}"
            )
        if raw.get("mm_projector_type", "sva") != "sva":
            raise ValueError("only mm_projector_type 'sva' is supported")
        if not raw.get("connector_only", True):
            raise ValueError("only connector_only checkpoints are supported (no in-LLM samplers)")
        if len(raw.get("query_num_list", [144])) != 1:
            raise ValueError("only one query group is supported (query_num_list of length 1)")

        def get(key: str, default: Any) -> Any:
            value = raw.get(key)
            return default if value is None else value

        return cls(
            model_type=model_type,
            hidden_size=int(raw["hidden_size"]),
            vision_hidden_size=int(get("vision_hidden_size", 1024)),
            query_num_list=tuple(get("query_num_list", [144])),
            connector_depth=int(get("connector_depth", 3)),
            image_token_len=int(get("image_token_len", 144)),
            lowres_token=int(get("lowres_token", 8)),
            highres=bool(get("highres", True)),
            dino_threshold=float(get("dino_threshold", 0.83)),
            drop_threshold=float(get("drop_threshold", 0.7)),
            tokenizer_model_max_length=int(get("tokenizer_model_max_length", 8192)),
            inference_max_length=int(get("inference_max_length", 16)),
            aux_token_len_list=tuple(get("mm_vision_tower_aux_token_len_list", [576, 576])),
            mm_projector_type="sva",
            connector_only=True,
            raw=raw,
        )

    @classmethod
    def from_file(cls, path: Path) -> "LongVUConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
