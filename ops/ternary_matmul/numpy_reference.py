"""``edgebit::ternary_linear`` in numpy, written from SPEC.md alone (no edgebit code): the contract every
implementation is tested against. Quantization runs in float32 as the spec says; the product and the rescale in
float64, so an implementation's float32 rounding is the only difference left."""

from __future__ import annotations

import numpy as np

ACT_EPS = np.float32(1e-5)


def quantize_activations(x):
    """Steps 1-2: per-token ``s = 127 / max(absmax, 1e-5)`` and ``q = clamp(round_half_even(x * s), -128, 127)``
    in float32. Returns (q as float32, s [..., 1])."""
    x = np.asarray(x, dtype=np.float32)
    s = np.float32(127) / np.maximum(np.abs(x).max(-1, keepdims=True), ACT_EPS)
    return np.clip(np.round((x * s).astype(np.float32)), -128, 127), s  # np.round: half to even


def ternary_linear(x, w, w_scale):
    """``out = (q @ W^T) / s * w_scale`` (float64) for the ternary matrix ``w`` [N, K] in {-1, 0, +1}."""
    q, s = quantize_activations(x)
    acc = q.astype(np.float64) @ np.asarray(w).T.astype(np.float64)
    return acc / s.astype(np.float64) * np.float64(w_scale)


def planar_columns(k: int) -> int:
    """``Kq = ceil(K / 4)``, the fewest packed bytes per row."""
    return -(-k // 4)


def pack_planar(w, kq: int | None = None, rng=None):
    """Ternary ``w`` [N, K] -> planar 2-bit uint8 [N, Kq]: code ``w + 1`` of column ``j * Kq + b`` in bits 2j..2j+1
    of byte b. Padding columns hold code 1 (weight 0), or random codes when ``rng`` is given (a kernel must ignore
    them)."""
    w = np.asarray(w)
    n, k = w.shape
    kq = planar_columns(k) if kq is None else kq
    codes = (np.ones((n, 4 * kq), np.uint8) if rng is None else rng.integers(0, 3, (n, 4 * kq)).astype(np.uint8))
    codes[:, :k] = w + 1
    return sum(codes[:, j * kq:(j + 1) * kq] << (2 * j) for j in range(4)).astype(np.uint8)


def unpack_planar(w_packed, in_features: int):
    """Planar 2-bit uint8 [N, Kq] -> ternary int8 [N, K] (code - 1; the columns beyond K are padding)."""
    w_packed = np.asarray(w_packed, np.uint8)
    planes = [(w_packed >> (2 * j)) & 3 for j in range(4)]  # plane j holds columns j * Kq .. (j + 1) * Kq - 1
    return (np.concatenate(planes, axis=1)[:, :in_features].astype(np.int8) - 1)


# ---- the operator at its schema, and the cases every runtime's implementation is checked on ----
TOLERANCE = 1e-6  # max |out - reference| over max |reference|: float32 rounding of the rescale only


def reference(x, w_packed, w_scale, in_features):
    """``edgebit::ternary_linear(x, w_packed, w_scale, in_features)`` -> (out,), float64."""
    return (ternary_linear(x, unpack_planar(w_packed, in_features), np.asarray(w_scale, np.float32).reshape(())),)


def cases() -> dict:
    """{name: schema arguments}: K not a multiple of 4 nor of a vector width, padded rows (Kq > ceil(K/4), padding
    codes random), leading dimensions, tokens of very different scales, rounding ties, an all-zero token, row
    blocks (N = 150) and a wide K with full vectors and a tail."""
    result = {}
    for k, kq, n in ((37, 10, 5), (70, 20, 150), (2560 + 6, 642, 67)):
        rng = np.random.default_rng(k)
        w = rng.integers(-1, 2, (n, k))
        x = (rng.standard_normal((2, 3, k)) * rng.uniform(0.1, 30, (2, 3, 1))).astype(np.float32)
        result[f"k{k}-kq{kq}-n{n}"] = (x, pack_planar(w, kq, rng), np.array([0.37], np.float32), k)
    ties = np.array([127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -126.5, 4.4999], np.float32)  # s = 1: exact ties
    rng = np.random.default_rng(0)
    x = np.stack([np.resize(ties, 45), np.zeros(45, np.float32), rng.standard_normal(45).astype(np.float32)])
    result["ties-and-zero-token"] = (x[None], pack_planar(rng.integers(-1, 2, (13, 45)), 14, rng),
                                     np.array([1.0], np.float32), 45)
    return result
