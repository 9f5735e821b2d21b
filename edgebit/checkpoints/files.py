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

from edgebit.errors import CheckpointError, EdgebitError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
PICKLE_FILES = ("pytorch_model.bin",)
PICKLE_INDEX_FILE = "pytorch_model.bin.index.json"


def read_json(path: Path, error: type[EdgebitError] = CheckpointError,
              fix: str = "restore the file from the original checkpoint"):
    """The JSON document in ``path``. Any way it is not JSON (not UTF-8, a syntax error, nesting too deep for the
    parser, an integer too long to convert) is one ``error`` that names the file and ends with ``fix``."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text at byte {exc.start}"
    except json.JSONDecodeError as exc:
        reason = str(exc)
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as exc:  # an integer beyond Python's int/str conversion limit (4300 digits)
        reason = str(exc).split(";")[0]
    except OSError as exc:
        reason = exc.strerror or str(exc)
    raise error(f"{path}: not valid JSON ({reason}); {fix}")


def read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{directory}: no config.json; a checkpoint directory needs config.json beside its weights")
    config = read_json(path)
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
        weight_map = read_json(index)
        weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(s, str) for s in weight_map.values()):
            raise CheckpointError(f"{index}: not a valid safetensors index (needs a 'weight_map' object of file names)")
        shards = sorted(set(weight_map.values()))
        for shard in shards:
            if shard in ("", ".", "..") or "/" in shard or "\\" in shard or "\0" in shard:
                raise CheckpointError(f"{index}: shard {shard!r} is not a file name in the checkpoint directory")
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


# What a weight file may hold: floating-point weights and scales, integer codes (packed weights are uint8). FP8, FP6,
# FP4, complex and unsigned 16 to 64-bit tensors load, but torch lacks the kernels to convert or reduce them.
TENSOR_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
                 torch.int8, torch.uint8, torch.bool)


def _check_tensors(path: Path, part) -> None:
    """``part`` (one file's content) is a mapping of names to tensors of dtypes edgebit can convert."""
    if not isinstance(part, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                             for k, v in part.items()):
        raise CheckpointError(f"{path}: not a mapping of tensor names to tensors; restore the weights from the "
                              "original checkpoint")
    for name, tensor in part.items():
        if tensor.dtype not in TENSOR_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {str(tensor.dtype).removeprefix('torch.')}, "
                                  "which edgebit does not read (it reads float64/32/16, bfloat16, signed integers, "
                                  "uint8 and bool); convert the checkpoint or download the original weights")


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
        _check_tensors(path, part)
        duplicate = tensors.keys() & part.keys()
        if duplicate:
            raise CheckpointError(f"{path}: tensor {sorted(duplicate)[0]!r} appears in more than one shard")
        tensors.update(part)
    return tensors
