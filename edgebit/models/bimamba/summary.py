"""What ``edgebit inspect`` reports for Bi-Mamba: architecture, parameter counts by precision, bits per weight, packed
size (as edgebit stores the model).
"""

from __future__ import annotations

from edgebit.models.bimamba.model import BiMambaForCausalLM
from edgebit.models.head import table_params

FP16_BYTES = 2


def summarize(model: BiMambaForCausalLM) -> dict:
    """1 bit per binarized weight + float32 alpha and beta per input column; fp16 embeddings; fp32 the rest."""
    binary = model.binary_layers()
    binary_params = sum(m.in_features * m.out_features for m in binary.values())
    binary_bytes = sum(m.out_features * -(-m.in_features // 8) + 2 * 4 * m.in_features for m in binary.values())
    embedding_params = table_params(model.embeddings)
    head_params = 0 if model.lm_head is None else table_params(model.lm_head)
    skip = {f"{name}.{p}" for name in binary for p in ("w_signs", "alpha", "beta", "weight")}
    other_params = sum(p.numel() for n, p in model.state_dict().items()
                       if n not in skip and n.split(".")[0] not in ("embeddings", "lm_head"))
    full_bytes = (embedding_params + head_params) * FP16_BYTES + other_params * 4
    total_params = binary_params + embedding_params + head_params + other_params
    packed_bytes = binary_bytes + full_bytes
    return {
        "family": model.family, "layout": getattr(model, "layout", None), "config": model.config.to_dict(),
        "parameters": {"total": total_params, "binary": binary_params, "embedding": embedding_params,
                       "lm_head": head_params, "other_full_precision": other_params},
        "binary_tensors": len(binary),
        "bits_per_binary_weight": 8 * binary_bytes / binary_params if binary_params else 0.0,
        "bits_per_weight_overall": 8 * packed_bytes / total_params,
        "binarized_compression_vs_fp16": 1 - binary_bytes / (binary_params * FP16_BYTES),
        "packed_bytes": {"binary": binary_bytes, "full_precision": full_bytes, "total": packed_bytes},
        "fp16_bytes": total_params * FP16_BYTES,
        "compression_vs_fp16": 1 - packed_bytes / (total_params * FP16_BYTES),
        "binarization_error": getattr(model, "binarization_error", None),
    }


def summary_rows(info: dict) -> list[tuple[str, str]]:
    """The rows of the ``edgebit inspect`` table for a :func:`summarize` result."""
    config, params, packed = info["config"], info["parameters"], info["packed_bytes"]
    rows = [
        ("architecture", f"Mamba-2, {config['num_hidden_layers']} layers, d_model {config['hidden_size']}, "
                         f"{config['num_heads']} heads x {config['head_dim']}, state {config['state_size']}, "
                         f"{config['n_groups']} groups, vocab {config['vocab_size']}"),
        ("parameters", f"{params['total']:,} ({params['binary']:,} binary in {info['binary_tensors']} "
                       f"FBI-Linear tensors, {params['embedding'] + params['lm_head']:,} embedding/head, "
                       f"{params['other_full_precision']:,} other)"),
        ("bits per weight", f"{info['bits_per_binary_weight']:.3f} binarized (sign + alpha/beta), "
                            f"{info['bits_per_weight_overall']:.3f} overall"),
        ("compression vs fp16", f"{info['binarized_compression_vs_fp16']:.1%} of the binarized "
                                f"projections, {info['compression_vs_fp16']:.1%} of the whole model"),
    ]
    if info.get("binarization_error") is not None:
        rows.append(("binarization error", f"{info['binarization_error']:.3f} (worst relative Frobenius error "
                                           "of a projection, alpha/beta fitted per column)"))
    rows.append(("packed size", f"{packed['total'] / 1e6:.2f} MB ({packed['binary'] / 1e6:.2f} MB binary + "
                                f"{packed['full_precision'] / 1e6:.2f} MB full precision)"))
    return rows
