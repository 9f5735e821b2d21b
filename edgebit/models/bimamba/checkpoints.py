"""Mamba-2 and Bi-Mamba checkpoints in their public layouts, all loaded as :class:`BiMambaForCausalLM`.

* **transformers Mamba2** (``model_type: mamba2``): ``backbone.embeddings.weight``, full-precision in/out_proj;
* **mamba_ssm / state-spaces** (config with ``d_model``, ``n_layer``, ``ssm_cfg``): ``backbone.embedding.weight``,
  full-precision in/out_proj;
* **Bi-Mamba release** (the mamba_ssm layout plus ``mixer.{in,out}_proj.{wscale,wbias}``): latent weights whose
  signs are the binary weights, with the released per-input-column scale and shift.

Full-precision projections are binarized at load with the alpha and beta that minimize the per-column
reconstruction error (:func:`fit_fbi`); ``edgebit binarize`` writes the result as an edgebit checkpoint.

**edgebit's format** (edgebit.checkpoints.edgebit_format) for Bi-Mamba: per FBI-Linear projection ``NAME`` (e.g.
``layers.0.mixer.in_proj``) ``NAME.w_signs`` uint8 [out, ceil(in/8)] (1 bit per weight, ops/binary_matmul/SPEC.md),
``NAME.alpha`` and ``NAME.beta`` float32 [1, in]; conv1d, A_log, D, dt_bias and norms float32.
"""

from __future__ import annotations

import torch

from edgebit.checkpoints.source import TensorSource
from edgebit.checkpoints.edgebit_format import config_from_record, record_stored_dtypes, stored_tensor
from edgebit.errors import CheckpointError
from edgebit.models.bimamba.model import BiMambaConfig, BiMambaForCausalLM, FBILinear

PROJECTIONS = ("in_proj", "out_proj")
MIXER_TENSORS = ("conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D", "norm.weight")


def is_hf_mamba2(config: dict) -> bool:
    return config.get("model_type") == "mamba2"


def is_mamba_ssm(config: dict) -> bool:
    return "d_model" in config and "n_layer" in config and isinstance(config.get("ssm_cfg"), dict)


def fit_fbi(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Signs and the per-input-column (alpha, beta) minimizing ||W - (alpha * sign(W) + beta)||^2 column by
    column (least squares in two unknowns); returns (signs, alpha [1, in], beta [1, in], relative error)."""
    w = weight.double()
    signs = torch.where(w >= 0, 1.0, -1.0).to(torch.float64)
    mean_s, mean_w, mean_ws = signs.mean(0), w.mean(0), (w * signs).mean(0)
    spread = 1 - mean_s ** 2
    degenerate = spread < 1e-12  # every sign in the column equal: alpha * s already covers the mean
    alpha = torch.where(degenerate, mean_ws, (mean_ws - mean_w * mean_s) / spread.clamp(min=1e-12))
    beta = torch.where(degenerate, torch.zeros_like(mean_w), mean_w - alpha * mean_s)
    error = (torch.linalg.norm(w - (alpha * signs + beta)) / torch.linalg.norm(w).clamp(min=1e-30)).item()
    return signs.to(torch.int8), alpha[None].float(), beta[None].float(), error


def _json_float(value):
    """transformers writes infinity in config.json as {"__float__": "Infinity"}; other values are returned as they
    are (BiMambaConfig checks them)."""
    if isinstance(value, dict) and "__float__" in value:
        try:
            return float(value["__float__"])
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
    return value


def config_from_hf(config: dict) -> BiMambaConfig:
    try:
        limit = config.get("time_step_limit", (0.0, float("inf")))
        eos = config.get("eos_token_id")
        return BiMambaConfig(vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
                             num_hidden_layers=config["num_hidden_layers"], num_heads=config["num_heads"],
                             head_dim=config["head_dim"], state_size=config.get("state_size", 128),
                             expand=config.get("expand", 2), n_groups=config.get("n_groups", 8),
                             conv_kernel=config.get("conv_kernel", 4),
                             layer_norm_epsilon=config.get("layer_norm_epsilon", 1e-5),
                             use_conv_bias=config.get("use_conv_bias", True), use_bias=config.get("use_bias", False),
                             time_step_limit=tuple(_json_float(v) for v in limit) if isinstance(limit, list) else limit,
                             tie_word_embeddings=config.get("tie_word_embeddings", False),
                             bos_token_id=config.get("bos_token_id"),
                             eos_token_id=(eos[0] if eos else None) if isinstance(eos, list) else eos)
    except KeyError as exc:
        raise CheckpointError(f"config.json lacks {exc.args[0]!r}, which a Mamba-2 config needs")
    except ValueError as exc:
        raise CheckpointError(f"config.json: {exc}; restore config.json from the original checkpoint")


def config_from_mamba_ssm(config: dict, vocab_rows: int) -> BiMambaConfig:
    ssm = config["ssm_cfg"]
    if ssm.get("layer", "Mamba2") != "Mamba2":
        raise CheckpointError(f"ssm_cfg.layer {ssm.get('layer')!r}: only Mamba-2 layers are supported")
    d_model, expand, head_dim = config["d_model"], ssm.get("expand", 2), ssm.get("headdim", 64)
    for name, value in (("d_model", d_model), ("ssm_cfg.expand", expand), ("ssm_cfg.headdim", head_dim)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CheckpointError(f"config.json: {name} must be a whole number from 1, not {value!r}; restore "
                                  "config.json from the original checkpoint")
    if (expand * d_model) % head_dim:
        raise CheckpointError(f"expand * d_model ({expand * d_model}) is not a multiple of headdim ({head_dim})")
    try:
        return BiMambaConfig(vocab_size=vocab_rows, hidden_size=d_model, num_hidden_layers=config.get("n_layer"),
                             num_heads=expand * d_model // head_dim, head_dim=head_dim,
                             state_size=ssm.get("d_state", 128), expand=expand, n_groups=ssm.get("ngroups", 1),
                             conv_kernel=ssm.get("d_conv", 4), use_conv_bias=ssm.get("conv_bias", True),
                             use_bias=ssm.get("bias", False), tie_word_embeddings=config.get("tie_embeddings", True))
    except ValueError as exc:
        raise CheckpointError(f"config.json: {exc}; restore config.json from the original checkpoint")


def _load(model: BiMambaForCausalLM, source: TensorSource, embedding_key: str) -> BiMambaForCausalLM:
    c = model.config
    if c.use_bias:
        raise CheckpointError("projections with bias (use_bias) are not supported")
    errors = []
    for i, block in enumerate(model.layers):
        prefix = f"backbone.layers.{i}."
        for name in PROJECTIONS:
            layer: FBILinear = getattr(block.mixer, name)
            key = f"{prefix}mixer.{name}"
            latent = source.take(f"{key}.weight", (layer.out_features, layer.in_features)).float()
            if source.has(f"{key}.wscale"):
                alpha = source.take(f"{key}.wscale").float().reshape(1, -1)
                beta = source.take(f"{key}.wbias", allow_zero=True).float().reshape(1, -1)
                if alpha.shape[1] != layer.in_features or beta.shape[1] != layer.in_features:
                    raise CheckpointError(f"{key}.wscale/wbias must have {layer.in_features} values (one per input "
                                          f"column), got {alpha.shape[1]} and {beta.shape[1]}")
                signs = torch.where(latent >= 0, 1, -1).to(torch.int8)
            else:
                signs, alpha, beta, error = fit_fbi(latent)
                errors.append(error)
            layer.set_binary(signs, alpha, beta)
    state, stored_names = {}, {}
    for name, param in model.state_dict().items():
        module_name = name.rsplit(".", 1)[0]
        if isinstance(model.get_submodule(module_name), FBILinear):
            state[name] = param
            continue
        stored = {"embeddings.weight": embedding_key, "norm_f.weight": "backbone.norm_f.weight",
                  "lm_head.weight": "lm_head.weight"}.get(name, f"backbone.{name}")
        stored_names[name] = stored
        state[name] = source.take(stored, tuple(param.shape), allow_zero=name.endswith("conv1d.bias")).float()
    model.load_state_dict(state)
    record_stored_dtypes(model, source, stored_names)
    model.binarization_error = max(errors) if errors else None
    return model


def _check_groups(c: BiMambaConfig, source: TensorSource) -> None:
    """in_proj's row count pins n_groups and heads: a mismatch is a config error, said plainly."""
    key = "backbone.layers.0.mixer.in_proj.weight"
    if source.has(key):
        shape = tuple(source.tensors[key].shape)
        expected = 2 * c.intermediate_size + 2 * c.n_groups * c.state_size + c.num_heads
        if not shape or shape[0] != expected:
            raise CheckpointError(f"{source.directory}: in_proj has shape {shape} but the config (heads "
                                  f"{c.num_heads}, n_groups {c.n_groups}, state {c.state_size}) implies {expected} "
                                  "rows; fix num_heads / n_groups in config.json")


def _new_model(c: BiMambaConfig, source: TensorSource) -> BiMambaForCausalLM:
    _check_groups(c, source)
    source.check_fits(c)
    return BiMambaForCausalLM(c)


def load_hf_mamba2(config: dict, source: TensorSource) -> BiMambaForCausalLM:
    return _load(_new_model(config_from_hf(config), source), source, "backbone.embeddings.weight")


def load_mamba_ssm(config: dict, source: TensorSource) -> BiMambaForCausalLM:
    embedding = source.take("backbone.embedding.weight")
    if embedding.dim() != 2:
        raise CheckpointError(f"{source.directory}: tensor 'backbone.embedding.weight' has shape "
                              f"{tuple(embedding.shape)}, not [vocab, d_model]; the checkpoint is damaged")
    c = config_from_mamba_ssm(config, embedding.shape[0])  # vocab padded to pad_vocab_size_multiple
    return _load(_new_model(c, source), source, "backbone.embedding.weight")


# edgebit's own format (edgebit.checkpoints.edgebit_format)


def save_tensors(model: BiMambaForCausalLM, encoding: str) -> dict[str, torch.Tensor]:
    """The packed model's state as stored: w_signs, alpha and beta per projection, the rest as they are."""
    return {name: stored_tensor(name, t, model) for name, t in model.state_dict().items()}


def load_edgebit(config: dict, source: TensorSource) -> BiMambaForCausalLM:
    """An edgebit checkpoint of this family: per projection w_signs, alpha, beta; the rest as stored."""
    model = _new_model(config_from_record(BiMambaConfig, config, source), source)
    for name, layer in model.binary_layers().items():
        packed = source.take(f"{name}.w_signs", (layer.out_features, -(-layer.in_features // 8)), allow_zero=True)
        layer.set_packed(packed, source.take(f"{name}.alpha", (1, layer.in_features)),
                         source.take(f"{name}.beta", (1, layer.in_features), allow_zero=True))
    state = {name: source.take(name, tuple(p.shape), allow_zero=name.endswith(("conv1d.bias", "beta", "w_signs")))
             .to(p.dtype) for name, p in model.state_dict().items()}
    model.load_state_dict(state)
    record_stored_dtypes(model, source, {name: name for name in state})
    return model
