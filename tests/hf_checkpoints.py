"""Tiny random BitNet checkpoints in the public layouts, written the way the public files are, using transformers'
own packing code (an implementation independent of edgebit's)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers.integrations.bitnet import pack_weights

PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@dataclass
class TinyShape:
    vocab: int = 101
    hidden: int = 36
    intermediate: int = 44
    layers: int = 2
    heads: int = 3
    kv_heads: int = 1
    tied: bool = True
    act: str = "relu2"

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def projection_shapes(self) -> dict[str, tuple[int, int]]:
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        return {"self_attn.q_proj": (q, self.hidden), "self_attn.k_proj": (kv, self.hidden),
                "self_attn.v_proj": (kv, self.hidden), "self_attn.o_proj": (self.hidden, q),
                "mlp.gate_proj": (self.intermediate, self.hidden), "mlp.up_proj": (self.intermediate, self.hidden),
                "mlp.down_proj": (self.hidden, self.intermediate)}

    def hf_config(self) -> dict:
        return {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "vocab_size": self.vocab,
                "hidden_size": self.hidden, "intermediate_size": self.intermediate,
                "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
                "num_key_value_heads": self.kv_heads, "hidden_act": self.act, "rms_norm_eps": 1e-5,
                "rope_theta": 500000.0, "max_position_embeddings": 256, "tie_word_embeddings": self.tied,
                "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "float32"}


def _norm(size: int, gen: torch.Generator) -> torch.Tensor:
    return 1.0 + 0.2 * torch.randn(size, generator=gen)


def _common_tensors(shape: TinyShape, gen: torch.Generator, subnorm_names=("self_attn.attn_sub_norm",
                                                                           "mlp.ffn_sub_norm")) -> dict:
    tensors = {"model.embed_tokens.weight": torch.randn(shape.vocab, shape.hidden, generator=gen),
               "model.norm.weight": _norm(shape.hidden, gen)}
    if not shape.tied:
        tensors["lm_head.weight"] = 0.5 * torch.randn(shape.vocab, shape.hidden, generator=gen)
    for i in range(shape.layers):
        p = f"model.layers.{i}."
        tensors[p + "input_layernorm.weight"] = _norm(shape.hidden, gen)
        tensors[p + "post_attention_layernorm.weight"] = _norm(shape.hidden, gen)
        tensors[p + subnorm_names[0] + ".weight"] = _norm(shape.heads * shape.head_dim, gen)
        tensors[p + subnorm_names[1] + ".weight"] = _norm(shape.intermediate, gen)
    return tensors


def write_packed(directory: Path, shape: TinyShape, linear_class: str, seed: int = 0) -> Path:
    """HF BitNet packed layout (2B-4T style): uint8 [out/4, in] row-blocked + weight_scale."""
    gen = torch.Generator().manual_seed(seed)
    tensors = _common_tensors(shape, gen)
    for i in range(shape.layers):
        for proj, (out_f, in_f) in shape.projection_shapes().items():
            ternary = torch.randint(-1, 2, (out_f, in_f), generator=gen).to(torch.float32)
            name = f"model.layers.{i}.{proj}"
            tensors[name + ".weight"] = pack_weights(ternary.clone())
            # bitlinear divides by the scale, autobitlinear multiplies: keep outputs O(1) in both conventions.
            gamma = 0.5 + torch.rand(1, generator=gen)
            scale = gamma if linear_class == "autobitlinear" else 1.0 / gamma
            tensors[name + ".weight_scale"] = (scale / in_f ** 0.5).to(torch.float32)
    config = shape.hf_config()
    config["quantization_config"] = {"quant_method": "bitnet", "linear_class": linear_class,
                                     "quantization_mode": "offline", "modules_to_not_convert": None}
    return _write(directory, config, tensors)


def write_unpacked(directory: Path, shape: TinyShape, seed: int = 0) -> Path:
    """HF BitNet unpacked layout: float latent weights (what ``BitNetForCausalLM.save_pretrained`` writes)."""
    gen = torch.Generator().manual_seed(seed)
    tensors = _common_tensors(shape, gen)
    for i in range(shape.layers):
        for proj, (out_f, in_f) in shape.projection_shapes().items():
            tensors[f"model.layers.{i}.{proj}.weight"] = torch.randn(out_f, in_f, generator=gen) / in_f ** 0.5
    config = shape.hf_config()
    config["quantization_config"] = {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                     "quantization_mode": "online", "modules_to_not_convert": None}
    return _write(directory, config, tensors)


def write_1bitllm(directory: Path, shape: TinyShape, seed: int = 0) -> Path:
    """1bitLLM/bitnet_b1_58 layout: LLaMA config, sub-norms named inner_attn_ln / ffn_layernorm, latent weights."""
    gen = torch.Generator().manual_seed(seed)
    tensors = _common_tensors(shape, gen, ("self_attn.inner_attn_ln", "mlp.ffn_layernorm"))
    for i in range(shape.layers):
        for proj, (out_f, in_f) in shape.projection_shapes().items():
            tensors[f"model.layers.{i}.{proj}.weight"] = torch.randn(out_f, in_f, generator=gen) / in_f ** 0.5
    config = shape.hf_config()
    config.update({"architectures": ["BitnetForCausalLM"], "model_type": "llama", "hidden_act": "silu",
                   "rope_theta": 10000.0})
    return _write(directory, config, tensors)


def _write(directory: Path, config: dict, tensors: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "model.safetensors"))
    return directory


def write_sharded(directory: Path, source: Path, shards: int = 2) -> Path:
    """Re-save a single-file checkpoint as ``shards`` safetensors files with an index."""
    from safetensors.torch import load_file

    tensors = load_file(str(source / "model.safetensors"))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text((source / "config.json").read_text())
    names = sorted(tensors)
    weight_map = {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s::shards]}
        save_file(part, str(directory / file))
        weight_map.update({n: file for n in part})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory


def transformers_logits(directory: Path, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits of transformers' BitNetForCausalLM loaded from ``directory`` (fp32, eager attention)."""
    from transformers import BitNetForCausalLM

    model = BitNetForCausalLM.from_pretrained(str(directory), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        return model(input_ids).logits.float()
