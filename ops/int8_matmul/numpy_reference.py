"""``edgebit::int8_linear`` in numpy, written from SPEC.md alone (no edgebit code): the contract every implementation
is tested against. Quantization in float32 as the spec says; the products and scales in float64."""

from __future__ import annotations

import numpy as np


def quantize_rows(weight, block_size: int):
    """float [N, K] -> (codes uint8 [N, Kp] = w + 128, padding 128; w_scale float32 [N])."""
    weight = np.asarray(weight, dtype=np.float32)
    n, k = weight.shape
    scale = (np.abs(weight).max(axis=1) / np.float32(127)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    w = np.clip(np.round(weight / safe[:, None]), -127, 127).astype(np.int16)
    padded = -(-k // block_size) * block_size
    codes = np.full((n, padded), 128, np.uint8)
    codes[:, :k] = (w + 128).astype(np.uint8)
    return codes, scale


def int8_linear(x, codes, w_scale, block_size: int):
    """x float32 [M, K] -> [M, N] (float64)."""
    x = np.asarray(x, dtype=np.float32)
    m, k = x.shape
    n, padded = codes.shape
    xp = np.zeros((m, padded), np.float32)
    xp[:, :k] = x
    blocks = xp.reshape(m, padded // block_size, block_size)
    amax = np.abs(blocks).max(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        inverse = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.clip(np.round((blocks * inverse).astype(np.float32)), -127, 127)
    d = (amax / np.float32(127)).astype(np.float32)
    w = (codes.astype(np.int32) - 128).reshape(n, padded // block_size, block_size)
    dots = np.einsum("mbk,nbk->mnb", q.astype(np.float64), w.astype(np.float64))
    return (dots * d.astype(np.float64).transpose(0, 2, 1)).sum(-1) * np.asarray(w_scale, np.float64)[None, :]


# ---- the operator at its schema, and the cases every runtime's implementation is checked on ----
TOLERANCE = 1e-5  # max |out - reference| over max |reference|: float32 sums of the block terms, in any order


def reference(x, codes, w_scale, in_features, block_size):
    """``edgebit::int8_linear(x, w_codes, w_scale, in_features, block_size)`` -> (out,), float64."""
    x = np.asarray(x, np.float32)
    out = int8_linear(x.reshape(-1, in_features), codes, w_scale, block_size)
    return (out.reshape(*x.shape[:-1], codes.shape[0]),)


def cases() -> dict:
    """{name: schema arguments}: one block of 16 and of 64, K not a multiple of the block (padding), leading
    dimensions, tokens of very different scales, an all-zero token and an all-zero block, a zero weight row, rows
    in several parallel tasks (N = 150) and a wide K (2566: 21 blocks of 128, the last one padded)."""
    result = {}
    for k, block, n in ((13, 16, 5), (64, 64, 9), (70, 128, 150), (2560 + 6, 128, 67)):
        rng = np.random.default_rng(k)
        weight = rng.standard_normal((n, k)).astype(np.float32)
        weight[n // 2] = 0
        codes, scale = quantize_rows(weight, block)
        x = (rng.standard_normal((2, 3, k)) * rng.uniform(0.1, 30, (2, 3, 1))).astype(np.float32)
        x[0, 1] = 0
        x[1, 0, :min(k, block)] = 0
        result[f"k{k}-b{block}-n{n}"] = (x, codes, scale, k, block)
    return result
