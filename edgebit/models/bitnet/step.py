"""BitNet b1.58 as one pure tensor function with a fixed-size KV cache: what torch.export and the device need.

``step(tokens [1, T], position [1], key_0, value_0, key_1, ...) -> (logits [1, T, V], key_0, value_0, ...)``
processes T new tokens that start at absolute position ``position``. Prefill is ``step(prompt, 0, empty caches)``;
decode is ``step(one token, n, caches)``. T is symbolic when exported, so one compiled function serves both.

Each layer has its own key and value cache ``[1, kv_heads, max_seq_len, head_dim]`` float32, one input and one
output each (as ONNX Runtime GenAI lays them out): stacking all layers into one tensor would copy every cache on
every step, and TVM lowers a stack of L tensors into an L-way select per element (quadratic in depth).

New keys and values land in their slots
through a one-hot placement matrix (exact, and free of data-dependent shapes, which TVM's importer cannot
express); query t attends to slots ``<= position + t``. The function reuses the eager model's modules, so it
computes the same numbers (tests check step == forward, prefill and decode alike).

ExecuTorch takes a second form, :class:`BufferCacheStep`, in the convention of ExecuTorch's own LLM runner
(``extension/llm/runner``): ``forward(tokens [1, T], input_pos [1]) -> logits [1, T, V]`` with every layer's caches held
inside the program as mutable buffers, written in place (``index_put_`` at the T new positions, which
ExecuTorch's re-inplacing keeps in place), so a step costs what its T tokens need instead of carrying every cache in
and out. Both forms share the layer code below.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgebit.models.bitnet.model import BitNetForCausalLM, apply_rope
from edgebit.models.layers import output_logits
from edgebit.models.step_graph import StepGraph, token_dim


def _repeat_kv(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, Hkv, S, D] -> [B, H, S, D], head h reading KV head h // (H / Hkv) (expand + reshape: plain ops)."""
    b, kv_heads, s, d = x.shape
    return x[:, :, None].expand(b, kv_heads, num_heads // kv_heads, s, d).reshape(b, num_heads, s, d)


def _decoder(model: BitNetForCausalLM, tokens: torch.Tensor, position: torch.Tensor, max_seq_len: int, attend_to):
    """Logits of ``tokens`` starting at ``position``; ``attend_to(layer, positions, placement, written, k, v)`` stores
    the layer's new keys and values ([1, Hkv, T, D]) and returns all ``max_seq_len`` slots of its cache."""
    t = tokens.shape[1]
    positions = position + torch.arange(t)
    cos, sin = model.rotary(positions)
    slots = torch.arange(max_seq_len)
    placement = (slots[:, None] == positions[None, :]).float()  # [S, T]
    written = (placement.sum(-1) > 0).view(1, 1, -1, 1)
    # Additive mask: 0 where query t may see slot s (s <= position + t), -1e30 elsewhere (exp underflows to 0).
    mask = ((slots[None, :] <= positions[:, None]).float() - 1.0) * 1e30  # [T, S]
    x = model.embed_tokens(tokens).float()
    for i, layer in enumerate(model.layers):
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        q = attn.q_proj(h).view(1, t, attn.num_heads, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(1, t, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(1, t, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k_all, v_all = attend_to(i, positions, placement, written, k, v)
        k_rep, v_rep = _repeat_kv(k_all, attn.num_heads), _repeat_kv(v_all, attn.num_heads)
        scores = (q @ k_rep.transpose(-1, -2)) * (1.0 / math.sqrt(attn.head_dim))
        scores = scores + mask
        out = (torch.softmax(scores, dim=-1) @ v_rep).transpose(1, 2).reshape(1, t, -1)
        x = x + attn.o_proj(attn.attn_sub_norm(out))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return output_logits(model.norm(x), model.embed_tokens, model.lm_head)


class StaticCacheStep(nn.Module):
    def __init__(self, model: BitNetForCausalLM, max_seq_len: int):
        super().__init__()
        self.model = model
        self.max_seq_len = max_seq_len
        config = model.config
        self.cache_shape = (1, config.num_key_value_heads, max_seq_len, config.head_dim)
        self.state_names = [f"{kind}_cache.{i}" for i in range(config.num_hidden_layers) for kind in ("key", "value")]

    def empty_cache(self) -> list[torch.Tensor]:
        """Zero caches in argument order: key and value of layer 0, then of layer 1, ..."""
        return [torch.zeros(self.cache_shape) for _ in self.state_names]

    def forward(self, tokens: torch.Tensor, position: torch.Tensor, *caches: torch.Tensor):
        updated = []

        def attend_to(i, positions, placement, written, k, v):
            # New keys and values land in their slots through the one-hot placement (no data-dependent indexing).
            k_all = torch.where(written, placement @ k, caches[2 * i])
            v_all = torch.where(written, placement @ v, caches[2 * i + 1])
            updated.extend((k_all, v_all))
            return k_all, v_all

        logits = _decoder(self.model, tokens, position, self.max_seq_len, attend_to)
        return logits, *updated


class BufferCacheStep(nn.Module):
    """``forward(tokens [1, T], input_pos [1]) -> logits [1, T, V]``, the caches being this module's buffers
    ``key_cache_<i>`` / ``value_cache_<i>`` ([1, Hkv, max_seq_len, D]), written in place at ``input_pos + t``.

    Slots past the current position are never read (the mask), so a new sequence simply starts again at position 0:
    nothing needs resetting (ExecuTorch zero-fills the planned memory the buffers live in when a program loads)."""

    def __init__(self, model: BitNetForCausalLM, max_seq_len: int):
        super().__init__()
        self.model = model
        self.max_seq_len = max_seq_len
        config = model.config
        shape = (1, config.num_key_value_heads, max_seq_len, config.head_dim)
        for i in range(config.num_hidden_layers):
            self.register_buffer(f"key_cache_{i}", torch.zeros(shape), persistent=False)
            self.register_buffer(f"value_cache_{i}", torch.zeros(shape), persistent=False)

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        def attend_to(i, positions, placement, written, k, v):
            key_cache, value_cache = getattr(self, f"key_cache_{i}"), getattr(self, f"value_cache_{i}")
            # index_put_ on the buffer, the T new slots only. Not ``cache[:, :, positions] = k``: Python's setitem
            # strips the value's leading 1s ([Hkv, T, D]), which ExecuTorch's in-place index_put_ kernel refuses.
            torch.ops.aten.index_put_(key_cache, [None, None, positions], k)
            torch.ops.aten.index_put_(value_cache, [None, None, positions], v)
            return key_cache, value_cache

        return _decoder(self.model, tokens, input_pos, self.max_seq_len, attend_to)


def bitnet_step_graph(model: BitNetForCausalLM, max_seq_len: int) -> StepGraph:
    """``step(tokens, position, key_cache.0, value_cache.0, ...)`` with example inputs for torch.export."""
    step = StaticCacheStep(model, max_seq_len).eval()
    caches = step.empty_cache()
    return StepGraph(step, (torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, dtype=torch.long), *caches),
                     ({1: token_dim(max_seq_len)}, None, tuple(None for _ in caches)), step.state_names,
                     [tuple(c.shape) for c in caches], True, max_seq_len, model.config.vocab_size)


def bitnet_llm_step_graph(model: BitNetForCausalLM, max_seq_len: int) -> StepGraph:
    """``forward(tokens, input_pos) -> logits`` with the caches inside (:class:`BufferCacheStep`), and the metadata
    methods ExecuTorch's LLM runner reads from a program (``extension/llm/runner/constants.h``)."""
    config = model.config
    eos = config.eos_token_id
    metadata = {"get_max_seq_len": max_seq_len, "get_max_context_len": max_seq_len,
                "get_vocab_size": config.vocab_size, "get_n_layers": config.num_hidden_layers,
                "use_kv_cache": True, "use_sdpa_with_kv_cache": False, "enable_dynamic_shape": True}
    if config.bos_token_id is not None:
        metadata["get_bos_id"] = config.bos_token_id
    if eos is not None:
        metadata["get_eos_ids"] = list(eos) if isinstance(eos, (list, tuple)) else [eos]
    step = BufferCacheStep(model, max_seq_len).eval()
    return StepGraph(step, (torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, dtype=torch.long)),
                     ({1: token_dim(max_seq_len)}, None), [], [], True, max_seq_len, config.vocab_size, metadata)
