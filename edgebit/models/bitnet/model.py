"""BitNet b1.58 as a PyTorch module: a LLaMA-like decoder whose projections are ternary.

Architecture (matches microsoft/bitnet-b1.58-2B-4T and transformers' BitNetForCausalLM):
pre-norm RMSNorm blocks, RoPE (rotate-half convention), grouped-query attention with ``attn_sub_norm`` before
``o_proj``, a gated FFN ``down(ffn_sub_norm(act(gate(x)) * up(x)))`` with act = ReLU^2 (BitNet) or SiLU (the SwiGLU
variant of the 1bitLLM reproductions), tied or untied full-precision embeddings and output head.

Every projection is a :class:`TernaryLinear`. It lives in one of two states:

* **latent** (training): a float weight, fake-quantized with straight-through estimators on every forward, so the
  same module trains with quantization-aware training;
* **packed** (inference and export): planar 2-bit weights and one scale, computed by the custom operator
  ``edgebit::ternary_linear`` so ``torch.export`` keeps one node per layer.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgebit.models.config_checks import (check_choice, check_flags, check_positive_floats, check_sizes,
                                          check_token_ids)
from edgebit.models.head import output_logits
from edgebit.models.layers import RMSNorm, layers_of, pack_layers
from edgebit.quant.packing import pack_planar, unpack_planar
from edgebit.quant.activations import fake_quant_activations_ste, fake_quant_weights_ste, quantize_weights
from edgebit_ops.ternary_matmul import ternary_linear

ACTIVATIONS = ("relu2", "silu")


@dataclass
class BitNetConfig:
    """Shape and numerics of a BitNet b1.58 model (field names follow transformers' BitNetConfig)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int | None = None
    hidden_act: str = "relu2"
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self) -> None:
        check_sizes(self, "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads", "num_key_value_heads", "max_position_embeddings")
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
            if not self.head_dim:
                raise ValueError(f"num_attention_heads ({self.num_attention_heads}) exceeds hidden_size "
                                 f"({self.hidden_size}): set head_dim")
        check_sizes(self, "head_dim")
        check_choice(self, "hidden_act", ACTIVATIONS)
        check_positive_floats(self, "rms_norm_eps", "rope_theta")
        check_flags(self, "tie_word_embeddings")
        check_token_ids(self, "bos_token_id", "eos_token_id")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")

    def weight_count(self) -> int:
        """How many weights a model of this config holds (what building it allocates, before packing)."""
        h = self.hidden_size
        inner, kv = self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        layer = h * (2 * inner + 2 * kv) + 3 * h * self.intermediate_size + inner + self.intermediate_size + 2 * h
        return self.vocab_size * h * (1 if self.tie_word_embeddings else 2) + self.num_hidden_layers * layer + h

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "BitNetConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


class TernaryLinear(nn.Module):
    """A bias-free BitNet b1.58 linear layer (int8 per-token activations x ternary weights x one scale)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.normal_(self.weight, std=in_features ** -0.5)

    @property
    def is_packed(self) -> bool:
        return self.weight is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_packed:
            return ternary_linear(x, self.w_packed, self.w_scale, self.in_features)
        return F.linear(fake_quant_activations_ste(x), fake_quant_weights_ste(self.weight))

    @torch.no_grad()
    def set_ternary(self, codes: torch.Tensor, scale: torch.Tensor | float) -> None:
        """Switch to the packed state with ternary ``codes`` [out, in] and a multiplicative per-tensor ``scale``."""
        if tuple(codes.shape) != (self.out_features, self.in_features):
            raise ValueError(f"expected ternary weights of shape {(self.out_features, self.in_features)}, "
                             f"got {tuple(codes.shape)}")
        self.set_packed(pack_planar(codes), scale)

    @torch.no_grad()
    def set_packed(self, w_packed: torch.Tensor, scale: torch.Tensor | float) -> None:
        """Switch to the packed state with planar weights (see edgebit.quant.packing)."""
        self.weight = None
        self.register_buffer("w_packed", w_packed.to(torch.uint8).contiguous())
        self.register_buffer("w_scale", torch.as_tensor(scale, dtype=torch.float32).reshape(1).clone())

    @torch.no_grad()
    def pack(self) -> None:
        """Ternarize the latent weight (absmean) and switch to the packed state."""
        codes, gamma = quantize_weights(self.weight)
        self.set_ternary(codes, gamma)

    def ternary_codes(self) -> torch.Tensor:
        """The int8 ternary matrix [out, in] of a packed layer."""
        return unpack_planar(self.w_packed, self.in_features)

    def extra_repr(self) -> str:
        state = "packed" if self.is_packed else "latent"
        return f"in_features={self.in_features}, out_features={self.out_features}, {state}"


class RotaryEmbedding(nn.Module):
    """Rotate-half RoPE; cos/sin are computed for the requested positions (no length cap)."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


def round_to_cache(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` (float32) as a KV cache of ``dtype`` stores it, back in float32: what attention reads."""
    return x if dtype == torch.float32 else x.to(dtype).float()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, T, D]; cos/sin: [T, D]."""
    return x * cos + _rotate_half(x) * sin


class KVCache:
    """Keys and values of every layer for incremental decoding (one list entry per layer, [B, Hkv, T, D])."""

    def __init__(self, num_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat((self.keys[layer], k), dim=2)
            v = torch.cat((self.values[layer], v), dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class Attention(nn.Module):
    def __init__(self, config: BitNetConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        inner = self.num_heads * self.head_dim
        kv = self.num_kv_heads * self.head_dim
        self.q_proj = TernaryLinear(config.hidden_size, inner)
        self.k_proj = TernaryLinear(config.hidden_size, kv)
        self.v_proj = TernaryLinear(config.hidden_size, kv)
        self.attn_sub_norm = RMSNorm(inner, config.rms_norm_eps)
        self.o_proj = TernaryLinear(inner, config.hidden_size)
        # What the device's KV cache stores keys and values in (edgebit.models.kv_cache); attention reads them back
        # from it, so every form of the model rounds them to it.
        self.cache_dtype = torch.float32

    def forward(self, x, cos, sin, cache: KVCache | None, past: int) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), round_to_cache(apply_rope(k, cos, sin), self.cache_dtype)
        v = round_to_cache(v, self.cache_dtype)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        groups = self.num_heads // self.num_kv_heads
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
        total = k.shape[2]
        # Query i (absolute position past + i) sees keys 0..past + i.
        causal = torch.ones(t, total, dtype=torch.bool).tril(diagonal=total - t)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=causal, scale=1.0 / math.sqrt(self.head_dim))
        out = out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)
        return self.o_proj(self.attn_sub_norm(out))


class FeedForward(nn.Module):
    def __init__(self, config: BitNetConfig):
        super().__init__()
        self.gate_proj = TernaryLinear(config.hidden_size, config.intermediate_size)
        self.up_proj = TernaryLinear(config.hidden_size, config.intermediate_size)
        self.ffn_sub_norm = RMSNorm(config.intermediate_size, config.rms_norm_eps)
        self.down_proj = TernaryLinear(config.intermediate_size, config.hidden_size)
        self.hidden_act = config.hidden_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.gate_proj(x)
        gate = F.relu(gate).square() if self.hidden_act == "relu2" else F.silu(gate)
        return self.down_proj(self.ffn_sub_norm(gate * self.up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, config: BitNetConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = FeedForward(config)

    def forward(self, x, cos, sin, cache, past):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, past)
        return x + self.mlp(self.post_attention_layernorm(x))


class BitNetForCausalLM(nn.Module):
    """``forward(input_ids [B, T]) -> float32 logits [B, T, V]``; pass a :class:`KVCache` to decode incrementally."""

    family = "bitnet"

    def __init__(self, config: BitNetConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        nn.init.normal_(self.embed_tokens.weight, std=0.02)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.lm_head = None
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
            nn.init.normal_(self.lm_head.weight, std=0.02)

    def new_cache(self) -> KVCache:
        return KVCache(self.config.num_hidden_layers)

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        past = 0 if cache is None else cache.length
        t = input_ids.shape[1]
        cos, sin = self.rotary(torch.arange(past, past + t))
        x = self.embed_tokens(input_ids).float()
        for layer in self.layers:
            x = layer(x, cos, sin, cache, past)
        return output_logits(self.norm(x), self.embed_tokens, self.lm_head)

    def ternary_layers(self) -> dict[str, TernaryLinear]:
        return layers_of(self, TernaryLinear)

    def pack(self) -> "BitNetForCausalLM":
        """Pack every latent projection in place (end of training); returns self."""
        return pack_layers(self, TernaryLinear)
