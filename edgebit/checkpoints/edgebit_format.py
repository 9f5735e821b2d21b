"""edgebit's own checkpoint: a directory with config.json, model.safetensors and optionally tokenizer.json.

config.json: ``{"edgebit_format": 1, "family": "bitnet" | "bimamba", "weight_encoding": "planar2" | "base3",
"config": {...}}``.

BitNet: model.safetensors holds, per ternary projection ``NAME`` (e.g. ``layers.0.self_attn.q_proj``):
``NAME.w_packed`` uint8 [out, ceil(in/4)] in the planar layout (``planar2``) or ``NAME.w_base3`` uint8
[out, ceil(in/5)] (``base3``), and ``NAME.w_scale`` float32 [1] (multiplicative). Embeddings and the optional
untied ``lm_head.weight`` are float16; norm weights float32. See edgebit.packing for the bit layouts.

Bi-Mamba: per FBI-Linear projection ``NAME`` (e.g. ``layers.0.mixer.in_proj``): ``NAME.w_signs`` uint8
[out, ceil(in/8)] (1 bit per weight, ops/binary_matmul/SPEC.md), ``NAME.alpha`` and ``NAME.beta`` float32 [1, in];
embeddings float16; everything else (conv1d, A_log, D, dt_bias, norms) float32.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from edgebit.checkpoints.bitnet_hf import fill_bitnet
from edgebit.checkpoints.source import TensorSource
from edgebit.errors import CheckpointError
from edgebit.models.bimamba import BiMambaConfig, BiMambaForCausalLM
from edgebit.models.bitnet import BitNetConfig, BitNetForCausalLM
from edgebit.packing import pack_base3, pack_planar, planar_columns, unpack_base3

FORMAT_VERSION = 1
ENCODINGS = ("planar2", "base3")
HALF_PRECISION = ("embed_tokens.weight", "embeddings.weight", "lm_head.weight")


def is_edgebit_checkpoint(config: dict) -> bool:
    return "edgebit_format" in config


def _bitnet_tensors(model: BitNetForCausalLM, encoding: str) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    ternary = model.ternary_layers()
    for name, layer in ternary.items():
        codes = layer.ternary_codes()
        if encoding == "planar2":
            tensors[f"{name}.w_packed"] = pack_planar(codes)
        else:
            tensors[f"{name}.w_base3"] = pack_base3(codes)
        tensors[f"{name}.w_scale"] = layer.w_scale.float().clone()
    for name, param in model.state_dict().items():
        if name.rsplit(".", 1)[0] in ternary:
            continue
        tensors[name] = _stored(name, param)
    return tensors


def _stored(name: str, tensor: torch.Tensor) -> torch.Tensor:
    if tensor.dtype == torch.uint8:
        return tensor.contiguous().clone()
    dtype = torch.float16 if name in HALF_PRECISION else torch.float32
    return tensor.to(dtype).contiguous().clone()


def save_checkpoint(model, out_dir: Path, encoding: str = "planar2", tokenizer_file: Path | None = None,
                    extra: dict | None = None) -> None:
    """Write ``model`` (packed first if needed) atomically: a temp dir beside ``out_dir``, renamed at the end."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}")
    model.pack()
    if model.family == "bitnet":
        tensors = _bitnet_tensors(model, encoding)
    else:
        tensors = {name: _stored(name, t) for name, t in model.state_dict().items()}
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
    version = config.get("edgebit_format")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{source.directory}: edgebit checkpoint format {version} is not supported by this "
                              f"edgebit (reads format {FORMAT_VERSION}); upgrade edgebit")
    family = config.get("family")
    if family == "bimamba":
        return _load_bimamba(config, source)
    if family != "bitnet":
        raise CheckpointError(f"{source.directory}: unknown model family {family!r} (known: bitnet, bimamba)")
    return _load_bitnet(config, source)


def _load_bimamba(config: dict, source: TensorSource) -> BiMambaForCausalLM:
    try:
        model = BiMambaForCausalLM(BiMambaConfig.from_dict(config["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source.directory}/config.json: invalid model config ({exc})")
    for name, layer in model.binary_layers().items():
        packed = source.take(f"{name}.w_signs", (layer.out_features, -(-layer.in_features // 8)), allow_zero=True)
        layer.set_packed(packed, source.take(f"{name}.alpha", (1, layer.in_features)),
                         source.take(f"{name}.beta", (1, layer.in_features), allow_zero=True))
    state = {name: source.take(name, tuple(p.shape), allow_zero=name.endswith(("conv1d.bias", "beta", "w_signs")))
             .to(p.dtype) for name, p in model.state_dict().items()}
    model.load_state_dict(state)
    return model


def _load_bitnet(config: dict, source: TensorSource) -> BitNetForCausalLM:
    encoding = config.get("weight_encoding", "planar2")
    if encoding not in ENCODINGS:
        raise CheckpointError(f"{source.directory}: unknown weight_encoding {encoding!r} (known: {ENCODINGS})")
    try:
        model_config = BitNetConfig.from_dict(config["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source.directory}/config.json: invalid model config ({exc})")
    model = BitNetForCausalLM(model_config)

    def set_projection(layer, name: str) -> str:
        out_f, in_f = layer.out_features, layer.in_features
        scale = source.take(f"{name}.w_scale", (1,))
        if encoding == "planar2":
            layer.set_packed(source.take(f"{name}.w_packed", (out_f, planar_columns(in_f))), scale)
            return f"{name}.w_packed"
        packed = source.take(f"{name}.w_base3", (out_f, -(-in_f // 5)))
        try:
            layer.set_ternary(unpack_base3(packed, in_f), scale)
        except ValueError as exc:
            raise CheckpointError(f"{source.directory}: tensor {name}.w_base3: {exc}")
        return f"{name}.w_base3"

    fill_bitnet(model, source, set_projection, lambda name: name)
    return model
