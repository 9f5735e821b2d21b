"""BitNet b1.58 checkpoints in the public Hugging Face layouts.

* **HF BitNet** (``model_type: bitnet``, microsoft/bitnet-b1.58-2B-4T): projections stored either packed (uint8
  [out/4, in], row-blocked, + ``weight_scale``) or unpacked (float [out, in]). ``quantization_config.linear_class``
  decides the scale convention: ``autobitlinear`` multiplies the output by ``weight_scale``, ``bitlinear`` (the
  default) divides by it. Unpacked float weights without a scale are latent weights, ternarized here (absmean).
* **1bitLLM** (``model_type: llama`` with ``inner_attn_ln`` / ``ffn_layernorm`` sub-norms, 1bitLLM/bitnet_b1_58-*):
  SwiGLU, untied head, full-precision latent weights ternarized at load.

Both become an :class:`edgebit.models.bitnet.model.BitNetForCausalLM` in the packed state.

**edgebit's format** (edgebit.checkpoints.edgebit_format) for BitNet: per ternary projection ``NAME`` (e.g.
``layers.0.self_attn.q_proj``) ``NAME.w_packed`` uint8 [out, ceil(in/4)] in the planar layout (``planar2``) or
``NAME.w_base3`` uint8 [out, ceil(in/5)] (``base3``), and ``NAME.w_scale`` float32 [1] (multiplicative); norm
weights float32. See edgebit.quant.packing for the bit layouts.
"""

from __future__ import annotations

import torch

from edgebit.checkpoints.source import TensorSource
from edgebit.errors import CheckpointError
from edgebit.models.bitnet.model import ACTIVATIONS, BitNetConfig, BitNetForCausalLM, TernaryLinear
from edgebit.checkpoints.edgebit_format import config_from_record, record_stored_dtypes, stored_tensor
from edgebit.quant.packing import pack_base3, pack_planar, planar_columns, unpack_base3, unpack_hf_rowblocked
from edgebit.quant.activations import quantize_weights

ENCODINGS = ("planar2", "base3")  # edgebit's format: the compute layout, or 1.6 bits per weight for storage
ONEBITLLM_SUBNORMS = {"self_attn.attn_sub_norm": "self_attn.inner_attn_ln", "mlp.ffn_sub_norm": "mlp.ffn_layernorm"}


def is_hf_bitnet(config: dict) -> bool:
    return config.get("model_type") == "bitnet"


def is_1bitllm(config: dict, source: TensorSource) -> bool:
    return config.get("model_type") == "llama" and source.has("model.layers.0.self_attn.inner_attn_ln.weight")


def _rope_theta(config: dict, default: float):
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise CheckpointError(f"config.json: rope_parameters / rope_scaling must be an object, not {rope!r}; "
                              "restore config.json from the original checkpoint")
    if rope.get("rope_type", "default") not in ("default", None):
        raise CheckpointError(f"RoPE type {rope['rope_type']!r} is not supported (only the default RoPE)")
    return config.get("rope_theta", rope.get("rope_theta", default))  # checked by BitNetConfig


def model_config(config: dict, hidden_act: str | None = None, rope_default: float = 500000.0) -> BitNetConfig:
    """edgebit's BitNetConfig from a transformers-style config.json (BitNetConfig checks the values)."""
    try:
        act = hidden_act or config.get("hidden_act", "relu2")
        if act not in ACTIVATIONS:
            raise CheckpointError(f"hidden_act {act!r} is not a BitNet activation (supported: {ACTIVATIONS})")
        heads = config["num_attention_heads"]
        bos, eos = config.get("bos_token_id"), config.get("eos_token_id")
        return BitNetConfig(
            vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"], num_hidden_layers=config["num_hidden_layers"],
            num_attention_heads=heads, num_key_value_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim"), hidden_act=act, rms_norm_eps=config.get("rms_norm_eps", 1e-5),
            rope_theta=_rope_theta(config, rope_default),
            max_position_embeddings=config.get("max_position_embeddings", 2048),
            tie_word_embeddings=config.get("tie_word_embeddings", False),
            bos_token_id=bos, eos_token_id=(eos[0] if eos else None) if isinstance(eos, list) else eos)
    except KeyError as exc:
        raise CheckpointError(f"config.json lacks {exc.args[0]!r}, which a BitNet config needs")
    except ValueError as exc:
        raise CheckpointError(f"config.json: {exc}; restore config.json from the original checkpoint")


def _set_hf_projection(layer: TernaryLinear, name: str, source: TensorSource, quantization: dict) -> str:
    weight = source.tensors.get(f"{name}.weight")
    out_f, in_f = layer.out_features, layer.in_features
    divides = quantization.get("linear_class", "bitlinear") != "autobitlinear"
    if weight is not None and weight.dtype == torch.uint8:
        if out_f % 4:
            raise CheckpointError(f"{name}: packed HF weights need out_features divisible by 4, got {out_f}")
        packed = source.take(f"{name}.weight", (out_f // 4, in_f))
        codes = unpack_hf_rowblocked(packed)
        scale = source.take(f"{name}.weight_scale", (1,)).float()
    else:
        latent = source.take(f"{name}.weight", (out_f, in_f)).float()
        if source.has(f"{name}.weight_scale"):  # offline-quantized but stored unpacked: values are already ternary
            if not bool(((latent == -1) | (latent == 0) | (latent == 1)).all()):
                raise CheckpointError(f"{name}.weight has a weight_scale but values outside {{-1, 0, 1}}")
            codes, scale = latent.to(torch.int8), source.take(f"{name}.weight_scale", (1,)).float()
        else:
            codes, scale = quantize_weights(latent)
            divides = False  # absmean gamma is multiplicative by definition
    layer.set_ternary(codes, 1.0 / scale if divides else scale)
    return f"{name}.weight"


def fill_bitnet(model: BitNetForCausalLM, source: TensorSource, set_projection, stored_name) -> None:
    """Load every tensor of ``model`` from ``source``, whatever the layout.

    ``set_projection(layer, name)`` packs the ternary projection ``name`` and returns the stored tensor it read
    (for messages); every other tensor of the model is read from ``stored_name(name)``.
    """
    ternary = model.ternary_layers()
    for name, layer in ternary.items():
        source.check_ternary(set_projection(layer, name), layer)
    state = {}
    for name, param in model.state_dict().items():
        if name.rsplit(".", 1)[0] in ternary:
            state[name] = param
        else:
            state[name] = source.take(stored_name(name), tuple(param.shape)).float()
    model.load_state_dict(state)
    record_stored_dtypes(model, source, {name: stored_name(name) for name in state})


def _hf_name(name: str, renames: dict[str, str] | None = None) -> str:
    """Our tensor name -> the HF checkpoint's (``model.`` prefix, untied ``lm_head`` at the top, renamed sub-norms)."""
    stored = name if name == "lm_head.weight" else f"model.{name}"
    for ours, theirs in (renames or {}).items():
        stored = stored.replace(ours, theirs)
    return stored


def _new_model(config: BitNetConfig, source: TensorSource) -> BitNetForCausalLM:
    source.check_fits(config)
    return BitNetForCausalLM(config)


def load_hf_bitnet(config: dict, source: TensorSource) -> BitNetForCausalLM:
    quantization = config.get("quantization_config") or {}
    if not isinstance(quantization, dict):
        raise CheckpointError(f"config.json: quantization_config must be an object, not {quantization!r}; "
                              "restore config.json from the original checkpoint")
    if quantization and quantization.get("quant_method", "bitnet") != "bitnet":
        raise CheckpointError(f"quantization_config.quant_method {quantization.get('quant_method')!r} is not bitnet")
    if quantization.get("use_rms_norm"):
        raise CheckpointError("quantization_config.use_rms_norm (an RMSNorm inside every BitLinear) is not supported")
    model = _new_model(model_config(config), source)
    fill_bitnet(model, source, lambda layer, name: _set_hf_projection(layer, f"model.{name}", source, quantization),
                _hf_name)
    return model


def load_1bitllm(config: dict, source: TensorSource) -> BitNetForCausalLM:
    model = _new_model(model_config(config, hidden_act=None, rope_default=10000.0), source)

    def set_latent(layer: TernaryLinear, name: str) -> str:
        stored = f"model.{name}.weight"
        layer.set_ternary(*quantize_weights(source.take(stored, (layer.out_features, layer.in_features)).float()))
        return stored

    fill_bitnet(model, source, set_latent, lambda name: _hf_name(name, ONEBITLLM_SUBNORMS))
    return model


# edgebit's own format (edgebit.checkpoints.edgebit_format): per projection w_packed or w_base3, and w_scale


def save_tensors(model: BitNetForCausalLM, encoding: str) -> dict[str, torch.Tensor]:
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
        tensors[name] = stored_tensor(name, param, model)
    return tensors


def load_edgebit(config: dict, source: TensorSource) -> BitNetForCausalLM:
    """An edgebit checkpoint of this family (encoding checked by edgebit.checkpoints.edgebit_format)."""
    encoding = config.get("weight_encoding", ENCODINGS[0])
    model = _new_model(config_from_record(BitNetConfig, config, source), source)

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
