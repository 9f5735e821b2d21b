"""BitNet b1.58 as one pure tensor function whose KV cache the device runner owns: what torch.export and the device
need.

``step(tokens [1, T], position [1], logit_rows [R], key_0, value_0, key_1, ...) -> (logits [1, R, V], key_0,
value_0, ...)`` processes T new tokens that start at absolute position ``position`` (:class:`AppendCacheStep`) and
returns the logits of the R tokens ``logit_rows`` names (edgebit.models.step_graph.logit_rows). Each cache input is
the filled prefix ``[P, Hkv, D]`` of the runner's buffer (P = position) and each cache output the T new rows, which
the runner appends: prefill is ``step(prompt, 0, empty prefixes)``, decode ``step(one token, n, prefixes of n
rows)``. T and P are symbolic when exported, so one compiled function serves both and a step costs what the tokens
so far need, not what ``max_seq_len`` allows. One key and one value cache per layer (as ONNX Runtime GenAI lays them
out). Grouped-query attention (``edgebit::grouped_attention``, ops/grouped_attention) stacks the query heads of each KV head: no copies of the
KV heads. The function reuses the eager model's modules, so it computes the same numbers (tests check step ==
forward, prefill and decode alike).

ExecuTorch takes a second form, :class:`BufferCacheStep`, in the convention of ExecuTorch's own LLM runner
(``extension/llm/runner``): ``forward(tokens [1, T], input_pos [1]) -> logits [1, T, V]`` with every layer's caches held
inside the program as mutable buffers, written in place (``index_put_`` at the T new positions, which
ExecuTorch's re-inplacing keeps in place), so a step costs what its T tokens need instead of carrying every cache in
and out. Both forms share the layer code below.
"""

from __future__ import annotations

import torch
from torch import nn

from edgebit.models.bitnet.model import BitNetForCausalLM, apply_rope
from edgebit.models.head import output_logits
from edgebit.models.step_graph import TOKENS_PER_STEP, StepGraph, logit_rows, logit_rows_dim, token_dim
from edgebit_ops.grouped_attention import GroupedAttention, attention_over_slots
from torch.export import Dim


def _repeat_kv(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, Hkv, S, D] -> [B, H, S, D], head h reading KV head h // (H / Hkv) (expand + reshape: plain ops)."""
    b, kv_heads, s, d = x.shape
    return x[:, :, None].expand(b, kv_heads, num_heads // kv_heads, s, d).reshape(b, num_heads, s, d)


def _decoder(model: BitNetForCausalLM, tokens: torch.Tensor, position: torch.Tensor, attend,
             logit_rows: torch.Tensor | None = None):
    """Logits of ``tokens`` starting at ``position`` (of the tokens ``logit_rows`` indexes, when given).
    ``attend(layer, positions, q, k, v)`` gets the layer's rotated queries [1, H, T, D] and new keys and values
    [1, Hkv, T, D] (float32), stores the latter in its cache (in the layer's ``cache_dtype``, which is what attention
    then reads) and returns the attention output [1, T, H * D]."""
    t = tokens.shape[1]
    positions = position + torch.arange(t)
    cos, sin = model.rotary(positions)
    x = model.embed_tokens(tokens).float()
    for i, layer in enumerate(model.layers):
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        q = attn.q_proj(h).view(1, t, attn.num_heads, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(1, t, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(1, t, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = attend(i, positions, q, k, v)
        x = x + attn.o_proj(attn.attn_sub_norm(out))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    if logit_rows is not None:
        x = x.index_select(1, logit_rows)
    return output_logits(model.norm(x), model.embed_tokens, model.lm_head)


class AppendCacheStep(nn.Module):
    """``step(tokens [1, T], position [1], logit_rows [R], key_0, value_0, ...) -> (logits [1, R, V], key_0',
    value_0', ...)`` with
    the device runner owning the KV cache: each cache input is the filled prefix ``[P, Hkv, D]`` (P = position; the
    runner passes a view of its ``[max_seq_len, Hkv, D]`` buffer, position-major so a prefix is contiguous), each
    output the T new rows ``[T, Hkv, D]``, which the runner writes at row P. A step therefore costs what the tokens
    so far need, whatever ``max_seq_len`` is: nothing is copied but the new rows, and attention spans P + T slots.
    The caches are in the attention layers' ``cache_dtype`` (edgebit.models.kv_cache: float16 or float32).
    """

    def __init__(self, model: BitNetForCausalLM, max_seq_len: int):
        super().__init__()
        self.model = model
        self.max_seq_len = max_seq_len
        self.attention = GroupedAttention()  # edgebit::grouped_attention: one kernel call where a runtime has one
        config = model.config
        self.cache_shape = (max_seq_len, config.num_key_value_heads, config.head_dim)  # the runner's buffer
        self.cache_dtype = model.layers[0].self_attn.cache_dtype
        self.state_names = [f"{kind}_cache.{i}" for i in range(config.num_hidden_layers) for kind in ("key", "value")]

    def empty_prefix(self, length: int = 0) -> list[torch.Tensor]:
        """Cache inputs of ``length`` rows (zeros) in argument order: key and value of layer 0, then of layer 1, ..."""
        return [torch.zeros((length, *self.cache_shape[1:]), dtype=self.cache_dtype) for _ in self.state_names]

    def forward(self, tokens: torch.Tensor, position: torch.Tensor, logit_rows: torch.Tensor, *prefixes: torch.Tensor):
        new_rows = []

        def attend(i, positions, q, k, v):
            # [T, Hkv, D] in the cache's dtype
            k_rows = k[0].transpose(0, 1).to(self.cache_dtype).contiguous()
            v_rows = v[0].transpose(0, 1).to(self.cache_dtype).contiguous()
            new_rows.extend((k_rows, v_rows))
            return self.attention(q, prefixes[2 * i], prefixes[2 * i + 1], k_rows, v_rows, positions)

        logits = _decoder(self.model, tokens, position, attend, logit_rows)
        return logits, *new_rows


class BufferCacheStep(nn.Module):
    """``forward(tokens [1, T], input_pos [1]) -> logits [1, T, V]``, the caches being this module's buffers
    ``key_cache_<i>`` / ``value_cache_<i>`` ([1, Hkv, max_seq_len, D], in the layers' ``cache_dtype``), written in
    place at ``input_pos + t``.

    Slots past the current position are never read (the mask), so a new sequence simply starts again at position 0:
    nothing needs resetting (ExecuTorch zero-fills the planned memory the buffers live in when a program loads)."""

    def __init__(self, model: BitNetForCausalLM, max_seq_len: int):
        super().__init__()
        self.model = model
        self.max_seq_len = max_seq_len
        config = model.config
        shape = (1, config.num_key_value_heads, max_seq_len, config.head_dim)
        dtype = model.layers[0].self_attn.cache_dtype
        for i in range(config.num_hidden_layers):
            self.register_buffer(f"key_cache_{i}", torch.zeros(shape, dtype=dtype), persistent=False)
            self.register_buffer(f"value_cache_{i}", torch.zeros(shape, dtype=dtype), persistent=False)

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        def attend(i, positions, q, k, v):
            key_cache, value_cache = getattr(self, f"key_cache_{i}"), getattr(self, f"value_cache_{i}")
            # index_put_ on the buffer, the T new slots only. Not ``cache[:, :, positions] = k``: Python's setitem
            # strips the value's leading 1s ([Hkv, T, D]), which ExecuTorch's in-place index_put_ kernel refuses.
            torch.ops.aten.index_put_(key_cache, [None, None, positions], k.to(key_cache.dtype))
            torch.ops.aten.index_put_(value_cache, [None, None, positions], v.to(value_cache.dtype))
            return attention_over_slots(q, key_cache[0].float(), value_cache[0].float(), positions)

        return _decoder(self.model, tokens, input_pos, attend)


def bitnet_step_graph(model: BitNetForCausalLM, max_seq_len: int) -> StepGraph:
    """``step(tokens, position, logit_rows, key_cache.0, value_cache.0, ...)`` (:class:`AppendCacheStep`) with
    example inputs for torch.export: T, R and the filled prefix P are symbolic."""
    step = AppendCacheStep(model, max_seq_len).eval()
    prefixes = step.empty_prefix(3)
    past = Dim("past", min=0, max=max_seq_len - 1)
    return StepGraph(step, (torch.zeros(1, 2, dtype=torch.long), torch.tensor([3]), logit_rows(2), *prefixes),
                     ({1: token_dim(max_seq_len)}, None, {0: logit_rows_dim(max_seq_len)},
                      tuple({0: past} for _ in prefixes)), step.state_names,
                     [step.cache_shape for _ in prefixes], True, max_seq_len, model.config.vocab_size,
                     state_kinds=["append"] * len(prefixes),
                     state_dtypes=[str(step.cache_dtype).removeprefix("torch.")] * len(prefixes),
                     takes_logit_rows=True)


def bitnet_llm_step_graph(model: BitNetForCausalLM, max_seq_len: int) -> StepGraph:
    """``forward(tokens, input_pos) -> logits`` with the caches inside (:class:`BufferCacheStep`), and the metadata
    methods ExecuTorch's LLM runner reads from a program (``extension/llm/runner/constants.h``). A call takes at most
    TOKENS_PER_STEP tokens (that runner's ``get_max_seq_len``: it prefills longer prompts in such chunks, as
    edgebit's runner does); the cache holds ``max_seq_len`` (``get_max_context_len``). ExecuTorch plans a program's
    memory for its largest shapes: with T up to the whole context, a 4096-token 2B-4T program planned 5.4 GB of
    activations ([T, vocab] logits, [H, T, T] scores) and its runner peaked at 7.4 GB."""
    config = model.config
    eos = config.eos_token_id
    tokens_per_step = min(max_seq_len, TOKENS_PER_STEP)
    metadata = {"get_max_seq_len": tokens_per_step, "get_max_context_len": max_seq_len,
                "get_vocab_size": config.vocab_size, "get_n_layers": config.num_hidden_layers,
                "use_kv_cache": True, "use_sdpa_with_kv_cache": False, "enable_dynamic_shape": True}
    if config.bos_token_id is not None:
        metadata["get_bos_id"] = config.bos_token_id
    if eos is not None:
        metadata["get_eos_ids"] = list(eos) if isinstance(eos, (list, tuple)) else [eos]
    step = BufferCacheStep(model, max_seq_len).eval()
    return StepGraph(step, (torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, dtype=torch.long)),
                     ({1: token_dim(max_seq_len, tokens_per_step)}, None), [], [], True, max_seq_len, config.vocab_size,
                     metadata)
