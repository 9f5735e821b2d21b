"""BitNet b1.58 as two pure tensor functions with a fixed-size KV cache: what torch.export and the device need.

* ``prefill(input_ids [1, T]) -> (logits [1, T, V], k_cache, v_cache)``
* ``decode(token [1, 1], position [1], k_cache, v_cache) -> (logits [1, 1, V], k_cache, v_cache)``

Caches are ``[layers, 1, kv_heads, max_seq_len, head_dim]`` float32, allocated once; decode writes position
``position`` with a select (no data-dependent shapes) and attends to positions ``<= position``. These functions
reuse the eager model's modules, so they compute the same numbers (tests check prefill == forward and T decode
steps == prefill).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgebit.models.bitnet import BitNetForCausalLM, apply_rope


class StaticCacheBitNet(nn.Module):
    def __init__(self, model: BitNetForCausalLM, max_seq_len: int):
        super().__init__()
        self.model = model
        self.max_seq_len = max_seq_len
        config = model.config
        self.cache_shape = (config.num_hidden_layers, 1, config.num_key_value_heads, max_seq_len, config.head_dim)

    def empty_cache(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(self.cache_shape), torch.zeros(self.cache_shape)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        model = self.model
        head = model.embed_tokens.weight if model.lm_head is None else model.lm_head.weight
        return F.linear(model.norm(x), head.float())

    def _attention_inputs(self, attn, h, cos, sin):
        b, t, _ = h.shape
        q = attn.q_proj(h).view(b, t, attn.num_heads, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(b, t, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(b, t, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def _attend(self, attn, q, k, v, mask):
        groups = attn.num_heads // attn.num_kv_heads
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(attn.head_dim))
        scores = scores.masked_fill(~mask, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v
        b, _, t, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t, attn.num_heads * attn.head_dim)
        return attn.o_proj(attn.attn_sub_norm(out))

    def prefill(self, input_ids: torch.Tensor):
        t = input_ids.shape[1]
        positions = torch.arange(t)
        cos, sin = self.model.rotary(positions)
        mask = positions[None, :] <= positions[:, None]
        x = self.model.embed_tokens(input_ids).float()
        keys, values = [], []
        for layer in self.model.layers:
            attn = layer.self_attn
            q, k, v = self._attention_inputs(attn, layer.input_layernorm(x), cos, sin)
            keys.append(F.pad(k, (0, 0, 0, self.max_seq_len - t)))
            values.append(F.pad(v, (0, 0, 0, self.max_seq_len - t)))
            x = x + self._attend(attn, q, k, v, mask)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self._logits(x), torch.stack(keys), torch.stack(values)

    def decode(self, token: torch.Tensor, position: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor):
        cos, sin = self.model.rotary(position)
        slots = torch.arange(self.max_seq_len)
        write = (slots == position).view(1, 1, -1, 1)
        mask = (slots <= position).view(1, -1)
        x = self.model.embed_tokens(token).float()
        keys, values = [], []
        for i, layer in enumerate(self.model.layers):
            attn = layer.self_attn
            q, k, v = self._attention_inputs(attn, layer.input_layernorm(x), cos, sin)
            k_all = torch.where(write, k, k_cache[i])
            v_all = torch.where(write, v, v_cache[i])
            keys.append(k_all)
            values.append(v_all)
            x = x + self._attend(attn, q, k_all, v_all, mask)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self._logits(x), torch.stack(keys), torch.stack(values)


class PrefillGraph(nn.Module):
    """``forward`` = :meth:`StaticCacheBitNet.prefill`, for torch.export."""

    def __init__(self, static: StaticCacheBitNet):
        super().__init__()
        self.static = static

    def forward(self, input_ids):
        return self.static.prefill(input_ids)


class DecodeGraph(nn.Module):
    """``forward`` = :meth:`StaticCacheBitNet.decode`, for torch.export."""

    def __init__(self, static: StaticCacheBitNet):
        super().__init__()
        self.static = static

    def forward(self, token, position, k_cache, v_cache):
        return self.static.decode(token, position, k_cache, v_cache)
