"""Reading a checkpoint directory's files safely: config.json, (sharded) safetensors, optional sha256 pins, and
pickled ``.bin`` files only when the user explicitly allows them.

Every failure becomes a :class:`CheckpointError` whose message names the file and what to do about it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from edgebit.errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
PICKLE_FILES = ("pytorch_model.bin",)
PICKLE_INDEX_FILE = "pytorch_model.bin.index.json"


def read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{directory}: no config.json; a checkpoint directory needs config.json beside its weights")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); restore the file from the original checkpoint")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object at the top level")
    return config


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_pins(directory: Path, pins: dict[str, str]) -> None:
    """Check ``{file name: sha256 hex}`` pins; a mismatch or a missing pinned file is an error."""
    for name, expected in pins.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{path}: pinned with --sha256 but not present in the checkpoint")
        actual = sha256_of(path)
        if actual != expected.lower():
            raise CheckpointError(f"{path}: sha256 {actual} does not match the pinned {expected}; "
                                  "the file changed since it was pinned: download it again or update the pin")


def weight_files(directory: Path, allow_pickle: bool) -> list[Path]:
    """The weight files of a checkpoint, preferring safetensors; pickles only with ``allow_pickle``."""
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise CheckpointError(f"{index}: not a valid safetensors index (needs a 'weight_map' object)")
        paths = [directory / shard for shard in shards]
        for path in paths:
            if not path.is_file():
                raise CheckpointError(f"{path}: listed in {INDEX_FILE} but missing; download the missing shard")
        return paths
    if (directory / SINGLE_FILE).is_file():
        return [directory / SINGLE_FILE]
    loose = sorted(directory.glob("*.safetensors"))
    if loose:
        return loose
    pickles = [directory / name for name in PICKLE_FILES if (directory / name).is_file()]
    if not pickles and (directory / PICKLE_INDEX_FILE).is_file():
        pickles = sorted(directory.glob("pytorch_model-*.bin"))
    if pickles:
        if not allow_pickle:
            raise CheckpointError(
                f"{pickles[0]}: pickled weights can run arbitrary code when loaded; convert them to safetensors, "
                "or pass --allow-pickle if you trust the file")
        return pickles
    raise CheckpointError(f"{directory}: no weights found (expected {SINGLE_FILE}, a sharded index or *.safetensors)")


def read_tensors(directory: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory, merged across shards."""
    tensors: dict[str, torch.Tensor] = {}
    for path in weight_files(directory, allow_pickle):
        if path.suffix == ".bin":
            try:
                part = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # torch raises many types for a bad pickle
                raise CheckpointError(f"{path}: cannot read the pickled weights ({type(exc).__name__}: {exc})")
        else:
            try:
                part = load_file(str(path))
            except (SafetensorError, OSError, ValueError) as exc:
                raise CheckpointError(f"{path}: not a readable safetensors file ({exc}); "
                                      "it may be truncated: download it again")
        duplicate = tensors.keys() & part.keys()
        if duplicate:
            raise CheckpointError(f"{path}: tensor {sorted(duplicate)[0]!r} appears in more than one shard")
        tensors.update(part)
    return tensors
