"""``edgebit::q4_linear`` in numpy, written from SPEC.md alone (no edgebit code): the contract every implementation
is tested against. Quantization in float32 as the spec says; the products and scales in float64."""

from __future__ import annotations

import numpy as np


def quantize_rows(weight, block_size: int):
    """float [N, K] -> (codes uint8 [N, Kp / 2], w_scale float32 [N, Kp / B]) by the SPEC's scale search."""
    weight = np.asarray(weight, dtype=np.float32)
    n, k = weight.shape
    padded = -(-k // block_size) * block_size
    blocks = np.zeros((n, padded), np.float32)
    blocks[:, :k] = weight
    blocks = blocks.reshape(n, padded // block_size, block_size)
    amax = np.abs(blocks).max(-1, keepdims=True)
    chosen_w = np.zeros(blocks.shape, np.float32)
    chosen_scale = np.zeros(amax.shape, np.float32)
    least = np.full(amax.shape, np.inf, np.float32)
    for i in range(19):
        factor = np.float32(0.7 + 0.025 * i)
        scale = (amax / np.float32(7) * factor).astype(np.float32)
        safe = np.where(scale > 0, scale, np.float32(1))
        w = np.clip(np.round(blocks / safe), -8, 7).astype(np.float32)
        error = ((w * scale - blocks) ** 2).sum(-1, keepdims=True, dtype=np.float32)
        better = error < least
        chosen_w = np.where(better, w, chosen_w)
        chosen_scale = np.where(better, scale, chosen_scale)
        least = np.where(better, error, least)
    chosen_w = np.where(amax > 0, chosen_w, 0)
    codes = (chosen_w + 8).astype(np.uint8)
    half = block_size // 2
    packed = codes[..., :half] | (codes[..., half:] << 4)
    return packed.reshape(n, padded // 2), chosen_scale.reshape(n, -1)


def weights(codes, block_size: int):
    """codes uint8 [N, Kp / 2] -> the signed weights int [N, Kp / B, B]."""
    n = codes.shape[0]
    halves = codes.reshape(n, -1, block_size // 2).astype(np.int32)
    return np.concatenate([halves & 15, halves >> 4], axis=-1) - 8


def q4_linear(x, codes, w_scale, block_size: int):
    """x float32 [M, K] -> [M, N] (float64)."""
    x = np.asarray(x, dtype=np.float32)
    m, k = x.shape
    n, padded = codes.shape[0], codes.shape[1] * 2
    xp = np.zeros((m, padded), np.float32)
    xp[:, :k] = x
    blocks = xp.reshape(m, padded // block_size, block_size)
    amax = np.abs(blocks).max(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        inverse = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.clip(np.round((blocks * inverse).astype(np.float32)), -127, 127)
    d = (amax / np.float32(127)).astype(np.float32)[..., 0]  # [M, blocks]
    dots = np.einsum("mbk,nbk->mnb", q.astype(np.float64), weights(codes, block_size).astype(np.float64))
    return (dots * d.astype(np.float64)[:, None, :] * np.asarray(w_scale, np.float64)[None]).sum(-1)


# ---- the operator at its schema, and the cases every runtime's implementation is checked on ----
TOLERANCE = 1e-5  # max |out - reference| over max |reference|: float32 sums of the block terms, in any order


def reference(x, codes, w_scale, in_features, block_size):
    """``edgebit::q4_linear(x, w_codes, w_scale, in_features, block_size)`` -> (out,), float64."""
    x = np.asarray(x, np.float32)
    out = q4_linear(x.reshape(-1, in_features), codes, w_scale, block_size)
    return (out.reshape(*x.shape[:-1], codes.shape[0]),)


def cases() -> dict:
    """{name: schema arguments}: every block size, K not a multiple of the block (padding), leading dimensions,
    tokens of very different scales, an all-zero token and an all-zero block, a zero weight row, rows in several
    parallel tasks and groups of four plus a remainder (N = 150, 67) and a wide K (2566: 41 blocks of 64)."""
    result = {}
    for k, block, n in ((13, 32, 5), (64, 64, 9), (70, 128, 150), (2560 + 6, 64, 67)):
        rng = np.random.default_rng(k)
        weight = rng.standard_normal((n, k)).astype(np.float32)
        weight[n // 2] = 0
        codes, scale = quantize_rows(weight, block)
        x = (rng.standard_normal((2, 3, k)) * rng.uniform(0.1, 30, (2, 3, 1))).astype(np.float32)
        x[0, 1] = 0
        x[1, 0, :min(k, block)] = 0
        result[f"k{k}-b{block}-n{n}"] = (x, codes, scale, k, block)
    return result
