"""What ``edgebit inspect`` reports: architecture, parameter counts by precision, bits per weight, packed size."""

from __future__ import annotations

from edgebit.models.bimamba import BiMambaForCausalLM
from edgebit.models.bitnet import BitNetForCausalLM
from edgebit.packing import planar_columns

FP16_BYTES = 2
SCALE_BYTES = 4  # one float32 scale per ternary tensor


def summarize(model) -> dict:
    """Counts and sizes of ``model`` as edgebit stores it."""
    if isinstance(model, BiMambaForCausalLM):
        return summarize_bimamba(model)
    return summarize_bitnet(model)


def summarize_bimamba(model: BiMambaForCausalLM) -> dict:
    """1 bit per binarized weight + float32 alpha and beta per input column; fp16 embeddings; fp32 the rest."""
    binary = model.binary_layers()
    binary_params = sum(m.in_features * m.out_features for m in binary.values())
    binary_bytes = sum(m.out_features * -(-m.in_features // 8) + 2 * 4 * m.in_features for m in binary.values())
    embedding_params = model.embeddings.weight.numel()
    head_params = 0 if model.lm_head is None else model.lm_head.weight.numel()
    skip = {f"{name}.{p}" for name in binary for p in ("w_signs", "alpha", "beta", "weight")}
    other_params = sum(p.numel() for n, p in model.state_dict().items() if n not in skip) - embedding_params - head_params
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


def summarize_bitnet(model: BitNetForCausalLM) -> dict:
    """Counts and sizes of ``model`` as edgebit stores it (ternary planar 2-bit, fp16 embeddings, fp32 norms)."""
    ternary = model.ternary_layers()
    ternary_params = sum(m.in_features * m.out_features for m in ternary.values())
    ternary_bytes = sum(m.out_features * planar_columns(m.in_features) + SCALE_BYTES for m in ternary.values())
    embedding_params = model.embed_tokens.weight.numel()
    head_params = 0 if model.lm_head is None else model.lm_head.weight.numel()
    other_params = sum(p.numel() for n, p in model.state_dict().items()
                       if n.rsplit(".", 1)[0] not in ternary) - embedding_params - head_params
    full_bytes = (embedding_params + head_params) * FP16_BYTES + other_params * 4
    total_params = ternary_params + embedding_params + head_params + other_params
    packed_bytes = ternary_bytes + full_bytes
    return {
        "family": model.family,
        "layout": getattr(model, "layout", None),
        "config": model.config.to_dict(),
        "parameters": {"total": total_params, "ternary": ternary_params, "embedding": embedding_params,
                       "lm_head": head_params, "other_full_precision": other_params},
        "ternary_tensors": len(ternary),
        "bits_per_ternary_weight": 8 * ternary_bytes / ternary_params if ternary_params else 0.0,
        "bits_per_weight_overall": 8 * packed_bytes / total_params,
        "packed_bytes": {"ternary": ternary_bytes, "full_precision": full_bytes, "total": packed_bytes},
        "fp16_bytes": total_params * FP16_BYTES,
        "compression_vs_fp16": 1 - packed_bytes / (total_params * FP16_BYTES),
    }
