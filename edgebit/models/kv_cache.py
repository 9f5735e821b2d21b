"""The precision of a transformer's KV cache on the device.

At depth the cache, not the weights, is what grows: a 2B-4T-shaped BitNet holds 150 KB per token in float32, 630 MB
at 4096 tokens, and a decode step at depth 2048 reads 315 MB of it. Stored in float16 it is half of both, for a
held-out perplexity change of about 0.02 % on the demo model. ``edgebit export --kv-cache`` picks it (fp16 by
default); the host reference model rounds its keys and values the same way, so ``validate`` compares like with like.

A model opts in by giving its attention modules a ``cache_dtype`` attribute (torch dtype, float32 by default), which
its eager forward and every step form (edgebit.models.bitnet.step, genai_step) read: keys and values are rounded
to it where they enter the cache. Families without a KV cache (Bi-Mamba) have no such module and no setting.
"""

from __future__ import annotations

import torch
from torch import nn

from edgebit.export import KV_CACHE_PRECISIONS

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
NAMES = {dtype: name for name, dtype in DTYPES.items()}


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    return [module for module in model.modules() if hasattr(module, "cache_dtype")]


def kv_cache_precision(model: nn.Module) -> str | None:
    """"fp32" or "fp16"; None for a model without a KV cache."""
    modules = _attention_modules(model)
    return NAMES[modules[0].cache_dtype] if modules else None


def set_kv_cache_precision(model: nn.Module, precision: str) -> nn.Module:
    """Store ``model``'s keys and values at ``precision`` from now on (in place; returns ``model``). A model without
    a KV cache is returned as it is."""
    if precision not in KV_CACHE_PRECISIONS:
        raise ValueError(f"unknown KV cache precision {precision!r}; choose one of {', '.join(KV_CACHE_PRECISIONS)}")
    for module in _attention_modules(model):
        module.cache_dtype = DTYPES[precision]
    return model


def kv_cache_bytes_per_token(model: nn.Module) -> dict[str, int] | None:
    """{precision: bytes one token's keys and values take in the device's cache, all layers}; None without a cache."""
    modules = _attention_modules(model)
    if not modules:
        return None
    elements = sum(2 * module.num_kv_heads * module.head_dim for module in modules)
    return {name: elements * torch.empty((), dtype=dtype).element_size() for name, dtype in DTYPES.items()
            if name in KV_CACHE_PRECISIONS}
