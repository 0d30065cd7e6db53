import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.checkpoint import CheckpointError
from models.model import is_connector_key, load_longvu
from models.tiny import write_tiny_checkpoint


def _copy_with_weights(src: Path, dst: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    shutil.copytree(src, dst)
    tensors = load_file(str(dst / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"))
    return dst


def test_tiny_checkpoint_has_real_layout(tiny_checkpoint: Path) -> None:
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model_type"] == "cambrian_qwen"
    assert config["mm_projector_type"] == "sva" and config["query_num_list"] == [144]
    keys = load_file(str(tiny_checkpoint / "model.safetensors")).keys()
    for key in ("model.vision_query", "model.image_newline", "model.mm_projector.0.weight",
                "model.mm_projector_aux_0.3.weight", "model.mm_projector_aux_1.0.weight",
                "model.vision_sampler_0.layers.2.cross_attn.k_proj_1.1.weight",
                "model.embed_tokens.weight", "lm_head.weight"):
        assert key in keys
    assert (tiny_checkpoint / "siglip" / "config.json").exists()
    assert (tiny_checkpoint / "dino" / "model.safetensors").exists()


def test_tiny_checkpoint_is_reproducible(tiny_checkpoint: Path, tmp_path: Path) -> None:
    again = write_tiny_checkpoint(tmp_path / "again")
    for name in ("model.safetensors", "config.json", "tokenizer.json", "siglip/model.safetensors",
                 "dino/model.safetensors"):
        assert (again / name).read_bytes() == (tiny_checkpoint / name).read_bytes(), name


def test_loaded_tokenizer_has_chat_tokens(model) -> None:  # type: ignore[no-untyped-def]
    tok = model.tokenizer
    ids = tok("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False).input_ids
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.decode(ids[1:-1]) == "user\nhi"


def test_connector_weights_are_the_checkpoints(model, tiny_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    state = model.connector.state_dict()
    for key, value in tensors.items():
        if is_connector_key(key):
            assert torch.equal(state[key.removeprefix("model.")], value), key
    assert torch.equal(model.llm.state_dict()["model.embed_tokens.weight"], tensors["model.embed_tokens.weight"])


def test_missing_key_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bad = _copy_with_weights(tiny_checkpoint, tmp_path / "bad", lambda t: t.pop("model.vision_query"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): model.vision_query"):
        load_longvu(str(bad))


def test_unexpected_key_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    def add(t: dict) -> None:
        t["model.vision_sampler_1.extra"] = torch.zeros(2)

    bad = _copy_with_weights(tiny_checkpoint, tmp_path / "bad", add)
    with pytest.raises(CheckpointError, match="unexpected keys.*model.vision_sampler_1.extra"):
        load_longvu(str(bad))


def test_shape_mismatch_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    def grow(t: dict) -> None:
        t["model.image_newline"] = torch.zeros(65)

    bad = _copy_with_weights(tiny_checkpoint, tmp_path / "bad", grow)
    with pytest.raises(CheckpointError, match=r"model.image_newline: checkpoint \(65,\) vs model \(64,\)"):
        load_longvu(str(bad))


def test_sharded_checkpoint_loads_the_same(model, tiny_checkpoint: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_checkpoint, sharded)
    tensors = load_file(str(sharded / "model.safetensors"))
    (sharded / "model.safetensors").unlink()
    keys = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for name, part in halves.items():
        save_file({k: tensors[k] for k in part}, str(sharded / name))
        weight_map.update({k: name for k in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": sum(t.nbytes for t in tensors.values())}, "weight_map": weight_map}))
    again = load_longvu(str(sharded))
    assert torch.equal(again.connector.vision_query, model.connector.vision_query)
    assert torch.equal(again.llm.lm_head.weight, model.llm.lm_head.weight)


def test_not_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        load_longvu(str(tmp_path / "nowhere"))
