"""edgebit's own checkpoint: a directory with config.json, model.safetensors and optionally tokenizer.json.

config.json: ``{"edgebit_format": 1, "family": FAMILY, "weight_encoding": ENCODING, "config": {...}}``, FAMILY a
registered family (edgebit.models) and ENCODING one of the family's ``encodings``. Which tensors model.safetensors
holds is the family's business (``Family.save_tensors`` / ``Family.load_edgebit``, documented in each family's
checkpoints.py); this module writes and reads the directory atomically and keeps embeddings and an untied head in
the precision the source checkpoint stored them in (float32, bfloat16 or float16; float16 for a model trained by
edgebit).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from edgebit.checkpoints.source import TensorSource
from edgebit.errors import CheckpointError

FORMAT_VERSION = 1
HALF_PRECISION = ("embed_tokens.weight", "embeddings.weight", "lm_head.weight")


def encodings() -> tuple[str, ...]:
    """Every weight encoding some family offers (``--encoding``)."""
    from edgebit.models import families

    return tuple(dict.fromkeys(e for f in families().values() for e in f.encodings))


def is_edgebit_checkpoint(config: dict) -> bool:
    return "edgebit_format" in config


SOURCE_PRECISIONS = (torch.float32, torch.bfloat16, torch.float16)


def record_stored_dtypes(model, source: TensorSource, stored_names: dict[str, str]) -> None:
    """Remember on ``model`` (``model.stored_dtypes``) the dtype the checkpoint stored its embeddings and untied
    head in (``stored_names``: our tensor name -> the checkpoint's), so that converting it keeps that precision
    (a float32 source converted to float16 embeddings misses the agreement bound against the source)."""
    dtypes = getattr(model, "stored_dtypes", {})
    for ours, theirs in stored_names.items():
        if ours in HALF_PRECISION and theirs in source.tensors:
            dtype = source.tensors[theirs].dtype
            dtypes[ours] = dtype if dtype in SOURCE_PRECISIONS else torch.float32
    model.stored_dtypes = dtypes


def stored_tensor(name: str, tensor: torch.Tensor, model=None) -> torch.Tensor:
    """``tensor`` as edgebit's format stores it: packed uint8 as is, embeddings and an untied head in the precision
    the source stored them in (``model.stored_dtypes``; float16 for a model without a record, e.g. one edgebit
    trained), everything else float32."""
    if tensor.dtype == torch.uint8:
        return tensor.contiguous().clone()
    if name in HALF_PRECISION:
        dtype = getattr(model, "stored_dtypes", {}).get(name, torch.float16)
    else:
        dtype = torch.float32
    return tensor.to(dtype).contiguous().clone()


def save_checkpoint(model, out_dir: Path, encoding: str | None = None, tokenizer_file: Path | None = None,
                    extra: dict | None = None) -> None:
    """Write ``model`` (packed first if needed) atomically: a temp dir beside ``out_dir``, renamed at the end."""
    from edgebit.models import family_of

    family = family_of(model)
    encoding = encoding or family.encodings[0]
    if encoding not in family.encodings:
        raise CheckpointError(f"--encoding {encoding!r}: {family.name} checkpoints offer "
                              f"{', '.join(family.encodings)}")
    model.pack()
    tensors = family.save_tensors(model, encoding)
    config = {"edgebit_format": FORMAT_VERSION, "family": model.family, "weight_encoding": encoding,
              "config": model.config.to_dict(), **(extra or {})}
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / "config.json").is_file():
        raise CheckpointError(f"{out_dir} exists and is not a checkpoint; choose another output directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if tokenizer_file is not None:
            shutil.copyfile(tokenizer_file, staging / "tokenizer.json")
        for path in staging.iterdir():
            path.chmod(0o644)
        staging.chmod(0o755)  # mkdtemp makes it private
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_checkpoint_dir(config: dict, source: TensorSource):
    from edgebit.models import families

    version = config.get("edgebit_format")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{source.directory}: edgebit checkpoint format {version} is not supported by this "
                              f"edgebit (reads format {FORMAT_VERSION}); upgrade edgebit")
    name = config.get("family")
    if not isinstance(name, str) or name not in families():
        raise CheckpointError(f"{source.directory}: unknown model family {name!r} (known: {', '.join(families())})")
    family = families()[name]
    encoding = config.get("weight_encoding", family.encodings[0])
    if encoding not in family.encodings:
        raise CheckpointError(f"{source.directory}: unknown weight_encoding {encoding!r} (known: "
                              f"{', '.join(family.encodings)})")
    return family.load_edgebit(config, source)


def config_from_record(config_class, config: dict, source: TensorSource):
    """``config_class`` from the checkpoint's "config" record, or a clear error naming the file."""
    record = config.get("config")
    if not isinstance(record, dict):
        raise CheckpointError(f"{source.directory}/config.json: \"config\" must be an object with the model's "
                              f"shape, not {type(record).__name__}; restore config.json from the original checkpoint")
    try:
        return config_class.from_dict(record)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source.directory}/config.json: invalid model config ({exc}); restore config.json "
                              "from the original checkpoint")
