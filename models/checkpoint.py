"""Reading a LongVU checkpoint: directory or hub id, single-file or sharded safetensors.

Loading is a strict key-for-key match against the modules we build: any missing or
unexpected key, or any shape mismatch, fails with a message that names them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from safetensors import safe_open
from torch import nn

SINGLE_FILE = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"


class CheckpointError(ValueError):
    pass


def resolve(path_or_id: str) -> Path:
    """A local directory as is; anything else is a hub id, fetched (or found in the HF cache)."""
    local = Path(path_or_id).expanduser()
    if local.is_dir():
        return local
    if local.exists() or path_or_id.startswith((".", "/")):
        raise CheckpointError(f"{path_or_id} is not a checkpoint directory")
    return Path(snapshot_download(path_or_id))


def weight_files(directory: Path) -> dict[str, Path]:
    """Map every tensor key to the safetensors file that holds it."""
    index = directory / SHARD_INDEX
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {key: directory / name for key, name in weight_map.items()}
    single = directory / SINGLE_FILE
    if not single.exists():
        raise CheckpointError(f"no {SINGLE_FILE} or {SHARD_INDEX} in {directory}")
    with safe_open(str(single), framework="pt") as f:
        return {key: single for key in f.keys()}


def tensor_shapes(files: dict[str, Path]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(set(files.values())):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                shapes[key] = tuple(f.get_slice(key).get_shape())
    missing_files = set(files) - set(shapes)
    if missing_files:
        raise CheckpointError(f"keys listed in the shard index but absent: {sorted(missing_files)[:10]}")
    return shapes


def check_keys(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(
        f"{key}: checkpoint {found[key]} vs model {expected[key]}"
        for key in set(expected) & set(found)
        if tuple(found[key]) != tuple(expected[key])
    )
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched[:20])}")
    if problems:
        raise CheckpointError("checkpoint does not match the model: " + " | ".join(problems))


def expected_shapes(module: nn.Module, prefix: str = "") -> dict[str, tuple[int, ...]]:
    return {prefix + key: tuple(t.shape) for key, t in module.state_dict().items()}


def load_tensors(
    files: dict[str, Path], keys: list[str], strip: str, device: torch.device, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[str]] = {}
    for key in keys:
        by_file.setdefault(files[key], []).append(key)
    for path, names in by_file.items():
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            for key in names:
                out[key.removeprefix(strip)] = f.get_tensor(key).to(dtype)
    return out
