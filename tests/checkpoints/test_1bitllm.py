"""The 1bitLLM/bitnet_b1_58 layout against an independent numpy reference written from the format's definition:
LLaMA blocks with RoPE (theta 10000) and SwiGLU, ``inner_attn_ln`` before o_proj and ``ffn_layernorm`` before
down_proj, every projection ``absmax-int8(x) @ absmean-ternary(W)`` from full-precision latent weights."""

import numpy as np
import torch
from safetensors.numpy import load_file

import edgebit
from edgebit.validate.agreement import compare_logits
from hf_checkpoints import TinyShape, write_1bitllm


def rms_norm(x, w, eps=1e-5):
    return w * x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)


def bit_linear(x, w):
    gamma = max(np.abs(w).mean(), 1e-5)
    wq = np.clip(np.round(w / gamma), -1, 1) * gamma
    s = 127.0 / np.maximum(np.abs(x).max(-1, keepdims=True), 1e-5)
    xq = np.clip(np.round(x * s), -128, 127) / s
    return xq @ wq.T


def rope(x, theta):  # x [T, H, D], rotate-half convention
    t, _, d = x.shape
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    ang = np.arange(t)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1))[:, None], np.sin(np.concatenate([ang, ang], -1))[:, None]
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + rot * sin


def reference_forward(tensors, shape, ids):
    t = len(ids)
    x = tensors["model.embed_tokens.weight"][ids].astype(np.float64)
    hd, groups = shape.head_dim, shape.heads // shape.kv_heads
    for i in range(shape.layers):
        p = lambda n: tensors[f"model.layers.{i}.{n}"].astype(np.float64)
        h = rms_norm(x, p("input_layernorm.weight"))
        q = rope(bit_linear(h, p("self_attn.q_proj.weight")).reshape(t, shape.heads, hd), 10000.0)
        k = rope(bit_linear(h, p("self_attn.k_proj.weight")).reshape(t, shape.kv_heads, hd), 10000.0)
        v = bit_linear(h, p("self_attn.v_proj.weight")).reshape(t, shape.kv_heads, hd)
        heads = []
        for head in range(shape.heads):
            kv = head // groups
            scores = q[:, head] @ k[:, kv].T / np.sqrt(hd)
            scores[np.triu_indices(t, 1)] = -np.inf
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            heads.append((probs / probs.sum(-1, keepdims=True)) @ v[:, kv])
        attn = rms_norm(np.concatenate(heads, -1), p("self_attn.inner_attn_ln.weight"))
        x = x + bit_linear(attn, p("self_attn.o_proj.weight"))
        h = rms_norm(x, p("post_attention_layernorm.weight"))
        gate = bit_linear(h, p("mlp.gate_proj.weight"))
        act = gate / (1 + np.exp(-gate)) * bit_linear(h, p("mlp.up_proj.weight"))
        x = x + bit_linear(rms_norm(act, p("mlp.ffn_layernorm.weight")), p("mlp.down_proj.weight"))
    x = rms_norm(x, tensors["model.norm.weight"].astype(np.float64))
    head = tensors["model.embed_tokens.weight" if shape.tied else "lm_head.weight"].astype(np.float64)
    return x @ head.T


def test_1bitllm_layout_matches_numpy_reference(tmp_path):
    shape = TinyShape(vocab=90, hidden=48, intermediate=64, heads=4, kv_heads=4, tied=False, act="silu")
    directory = write_1bitllm(tmp_path / "ckpt", shape, seed=11)
    tensors = load_file(str(directory / "model.safetensors"))
    ids = np.random.default_rng(0).integers(0, shape.vocab, 10)
    reference = reference_forward(tensors, shape, ids)
    model = edgebit.load(directory)
    assert model.layout == "1bitllm" and model.config.hidden_act == "silu"
    ours = model(torch.tensor(ids)[None]).detach()[0].numpy()
    result = compare_logits(ours, reference)
    assert result.passed, result.describe()
