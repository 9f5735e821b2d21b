"""What ``edgebit inspect`` reports for BitNet: architecture, parameter counts by precision, bits per weight, packed
size (as edgebit stores the model).
"""

from __future__ import annotations

from edgebit.models.bitnet.model import BitNetForCausalLM
from edgebit.models.head import table_params
from edgebit.quant.packing import planar_columns

FP16_BYTES = 2
SCALE_BYTES = 4  # one float32 scale per ternary tensor


def summarize(model: BitNetForCausalLM) -> dict:
    """Counts and sizes of ``model`` as edgebit stores it (ternary planar 2-bit, fp16 embeddings, fp32 norms)."""
    ternary = model.ternary_layers()
    ternary_params = sum(m.in_features * m.out_features for m in ternary.values())
    ternary_bytes = sum(m.out_features * planar_columns(m.in_features) + SCALE_BYTES for m in ternary.values())
    embedding_params = table_params(model.embed_tokens)
    head_params = 0 if model.lm_head is None else table_params(model.lm_head)
    other_params = sum(p.numel() for n, p in model.state_dict().items()
                       if n.rsplit(".", 1)[0] not in ternary and n.split(".")[0] not in ("embed_tokens", "lm_head"))
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


def summary_rows(info: dict) -> list[tuple[str, str]]:
    """The rows of the ``edgebit inspect`` table for a :func:`summarize` result."""
    config, params, packed = info["config"], info["parameters"], info["packed_bytes"]
    return [
        ("architecture", f"{config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
                         f"FFN {config['intermediate_size']} ({config['hidden_act']}), heads "
                         f"{config['num_attention_heads']}/{config['num_key_value_heads']} KV, vocab "
                         f"{config['vocab_size']}, {'tied' if config['tie_word_embeddings'] else 'untied'} embeddings"),
        ("parameters", f"{params['total']:,} ({params['ternary']:,} ternary in {info['ternary_tensors']} tensors, "
                       f"{params['embedding'] + params['lm_head']:,} embedding/head, "
                       f"{params['other_full_precision']:,} other)"),
        ("bits per weight", f"{info['bits_per_ternary_weight']:.3f} ternary, "
                            f"{info['bits_per_weight_overall']:.3f} overall"),
        ("packed size", f"{packed['total'] / 1e6:.2f} MB ({packed['ternary'] / 1e6:.2f} MB ternary + "
                        f"{packed['full_precision'] / 1e6:.2f} MB full precision); fp16 would be "
                        f"{info['fp16_bytes'] / 1e6:.2f} MB ({info['compression_vs_fp16']:.1%} smaller)"),
    ]
