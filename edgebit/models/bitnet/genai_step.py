"""BitNet b1.58 as an ONNX Runtime GenAI decoder: the step in GenAI's convention, with a growing KV cache.

``forward(input_ids [B, S], attention_mask [B, P + S], position_ids [B, S], past_key_values.0.key, ...value, ...)
-> (logits [B, S, V], present.0.key, present.0.value, ...)``, every past key and value ``[B, kv_heads, P, head_dim]``
and every present one ``[B, kv_heads, P + S, head_dim]`` = concat(past, new): a step costs what the tokens so far
need (no fixed-size cache to carry), and the first step has P = 0. These are GenAI's default names for a decoder
without ``past_present_share_buffer``; :func:`genai_config` writes the genai_config.json that describes the graph to
GenAI (model type "llama": BitNet is a LLaMA-like decoder, and GenAI drives every LLM type the same way).

Query s (cache slot P + s) sees slot j when ``j <= P + s`` and ``attention_mask[b, j]`` is 1 (GenAI pads the
shorter prompts of a batch with pad_token_id on the right and masks the padding, which stays in the cache unseen);
position_ids carry RoPE's positions (GenAI's count skips the padding).
The module reuses the eager model's modules, so it computes the same numbers as the host model and the
fixed-cache step (edgebit.models.bitnet.step).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgebit.models.bitnet.model import BitNetForCausalLM, apply_rope, round_to_cache
from edgebit.models.bitnet.step import _repeat_kv
from edgebit.models.head import output_logits
from edgebit.models.step_graph import GenAIDecoder

GENAI_MODEL_TYPE = "llama"


def _names(layers: int, pattern: str) -> list[str]:
    return [pattern.format(i=i, kind=kind) for i in range(layers) for kind in ("key", "value")]


class GrowingCacheStep(nn.Module):
    def __init__(self, model: BitNetForCausalLM):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor):
        model = self.model
        b, s = input_ids.shape
        cos, sin = model.rotary(position_ids.reshape(-1))  # [B * S, D]
        cos, sin = cos.view(b, 1, s, -1), sin.view(b, 1, s, -1)
        past_len = past[0].shape[2]
        slots = torch.arange(past_len + s)
        visible = (slots[None, :] <= (past_len + torch.arange(s))[:, None])[None, None]  # [1, 1, S, P + S]
        visible = visible & (attention_mask[:, None, None, :] != 0)  # [B, 1, S, P + S]
        # Additive mask: 0 where visible, -1e30 elsewhere (exp underflows to 0; a row of padding stays finite).
        mask = (visible.float() - 1.0) * 1e30
        x = model.embed_tokens(input_ids).float()
        present = []
        for i, layer in enumerate(model.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(b, s, attn.num_heads, attn.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(b, s, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(b, s, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
            # GenAI's past is float32; the values are those a cache of the layer's cache_dtype would hold
            q, k = apply_rope(q, cos, sin), round_to_cache(apply_rope(k, cos, sin), attn.cache_dtype)
            v = round_to_cache(v, attn.cache_dtype)
            k_all = torch.cat((past[2 * i], k), dim=2)
            v_all = torch.cat((past[2 * i + 1], v), dim=2)
            present += [k_all, v_all]
            k_rep, v_rep = _repeat_kv(k_all, attn.num_heads), _repeat_kv(v_all, attn.num_heads)
            scores = (q @ k_rep.transpose(-1, -2)) * (1.0 / math.sqrt(attn.head_dim)) + mask
            out = (torch.softmax(scores, dim=-1) @ v_rep).transpose(1, 2).reshape(b, s, -1)
            x = x + attn.o_proj(attn.attn_sub_norm(out))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return output_logits(model.norm(x), model.embed_tokens, model.lm_head), *present


def genai_config(model: BitNetForCausalLM, context_length: int) -> dict:
    """genai_config.json for the decoder (its ``decoder.filename`` is the runtime's to fill in)."""
    config = model.config
    eos = config.eos_token_id
    pad = eos if eos is not None else (config.bos_token_id or 0)
    layers = config.num_hidden_layers
    model_section = {
        "type": GENAI_MODEL_TYPE,
        "context_length": context_length,
        "vocab_size": config.vocab_size,
        "pad_token_id": pad,
        "decoder": {
            "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
            "head_size": config.head_dim,
            "hidden_size": config.hidden_size,
            "num_attention_heads": config.num_attention_heads,
            "num_key_value_heads": config.num_key_value_heads,
            "num_hidden_layers": layers,
            "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask", "position_ids": "position_ids",
                       "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
            "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                        "present_value_names": "present.%d.value"},
        },
    }
    if config.bos_token_id is not None:
        model_section["bos_token_id"] = config.bos_token_id
    if eos is not None:
        model_section["eos_token_id"] = eos
    search = {"max_length": context_length, "do_sample": False, "past_present_share_buffer": False,
              "num_beams": 1, "num_return_sequences": 1}
    return {"model": model_section, "search": search}


def bitnet_genai_decoder(model: BitNetForCausalLM, context_length: int) -> GenAIDecoder:
    """The GenAI decoder step with example inputs (batch 2, 3 tokens after 5 cached ones: no 0/1 specialization)
    and its dynamic dimensions: batch, sequence, past length (which may be 0) and total length."""
    from torch.export import Dim

    config = model.config
    layers = config.num_hidden_layers
    batch, seq = Dim("batch", min=1, max=1024), Dim("sequence", min=1, max=context_length)
    past_len = Dim("past_sequence", min=0, max=context_length)
    total = Dim("total_sequence", min=1, max=2 * context_length)
    b, s, p = 2, 3, 5
    past = [torch.zeros(b, config.num_key_value_heads, p, config.head_dim) for _ in range(2 * layers)]
    example = (torch.zeros(b, s, dtype=torch.long), torch.ones(b, p + s, dtype=torch.long),
               torch.arange(p, p + s).repeat(b, 1), *past)
    dynamic = ({0: batch, 1: seq}, {0: batch, 1: total}, {0: batch, 1: seq},
               tuple({0: batch, 2: past_len} for _ in past))
    return GenAIDecoder(GrowingCacheStep(model).eval(), example, dynamic,
                        ["input_ids", "attention_mask", "position_ids", *_names(layers, "past_key_values.{i}.{kind}")],
                        ["logits", *_names(layers, "present.{i}.{kind}")], genai_config(model, context_length))
