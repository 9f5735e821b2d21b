"""The KV cache's precision (edgebit.models.kv_cache) and the validation bound it calls for
(edgebit.validate.agreement: the reference's rounding noise)."""

import numpy as np
import pytest
import torch

import edgebit
from edgebit.generate import load_tokenizer
from edgebit.models.head import set_head_precision
from edgebit.models.kv_cache import kv_cache_precision, set_kv_cache_precision
from edgebit.validate.agreement import compare_logits
from edgebit.validate.reference import host_logits, reference_inputs, rounding_noise
from edgebit.cli import EMBEDDED_MODELS


def test_fp16_cache_rounds_keys_and_values_as_numpy_float16_does():
    """The eager model's keys and values go through float16 (what the device stores), nothing else changes: the
    logits differ from the float32 cache's, and by no more than the rounding of the cache explains."""
    model = edgebit.load(EMBEDDED_MODELS["demo"])
    assert kv_cache_precision(model) == "fp32"
    ids = reference_inputs(model.config.vocab_size, load_tokenizer(EMBEDDED_MODELS["demo"]))
    fp32 = host_logits(model, ids)
    captured = []
    attention = model.layers[0].self_attn
    hook = attention.o_proj.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    set_kv_cache_precision(model, "fp16")
    fp16 = host_logits(model, ids)
    hook.remove()
    assert kv_cache_precision(model) == "fp16" and not np.array_equal(fp16, fp32)
    # position 0 attends to itself only: its attention output is its value row, rounded as numpy rounds it
    v = attention.v_proj(model.layers[0].input_layernorm(model.embed_tokens(torch.from_numpy(ids[:, :1])).float()))
    rounded = torch.from_numpy(v.detach().numpy().astype(np.float16).astype(np.float32))  # [B, 1, Hkv * D]
    heads = rounded.view(*rounded.shape[:2], attention.num_kv_heads, attention.head_dim)
    heads = heads.repeat_interleave(attention.num_heads // attention.num_kv_heads, dim=2).flatten(2)
    expected = attention.attn_sub_norm(heads).detach().numpy()  # what o_proj is given
    np.testing.assert_allclose(captured[-1][:, :1].detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert compare_logits(fp16, fp32).cosine > 0.9999


def test_rounding_noise_is_measured_and_widens_the_error_bound():
    model = set_kv_cache_precision(set_head_precision(edgebit.load(EMBEDDED_MODELS["demo"]), "int8"), "fp16")
    ids = reference_inputs(model.config.vocab_size, load_tokenizer(EMBEDDED_MODELS["demo"]))
    logits = host_logits(model, ids)
    noise = rounding_noise(model, ids, logits, seeds=2)
    assert 0 < noise < 0.05 * np.abs(logits).max()  # flips move some logits, never the whole picture
    assert np.array_equal(host_logits(model, ids), logits)  # the nudges were removed

    reference = np.zeros((1, 4, 8), np.float32)
    reference[0, :, 0] = 10.0
    candidate = reference.copy()
    candidate[0, 2, 3] += 0.2  # one flipped activation's worth: 2 % of the largest logit
    assert not compare_logits(candidate, reference).passed  # 1 % of 10
    assert compare_logits(candidate, reference, rounding_noise=0.15).passed  # twice the noise: 0.3
    assert compare_logits(candidate, reference, rounding_noise=0.15).error_bound == pytest.approx(0.3)
    assert not compare_logits(candidate, reference, rounding_noise=0.05).passed
