"""``edgebit::binary_linear`` in numpy, written from SPEC.md alone (no edgebit code): activations quantized to int8
per plane in float32 as the SPEC states, the sums in float64."""

from __future__ import annotations

import numpy as np


def w_hat(signs, alpha, beta):
    """``W_hat = alpha * sign(W) + beta`` [N, K] (float64), ``alpha`` and ``beta`` per input column [1, K]."""
    return (np.asarray(alpha, np.float64).reshape(1, -1) * np.asarray(signs, np.float64)
            + np.asarray(beta, np.float64).reshape(1, -1))


def binary_linear(x, signs, alpha, beta):
    """``out = x @ W_hat^T`` (float64) for ``signs`` [N, K] in {-1, +1}: the layer's exact product, which the operator
    approximates with its activations quantized to int8 (:func:`reference`)."""
    return np.asarray(x, np.float64) @ w_hat(signs, alpha, beta).T


def quantized_planes(x, alpha, kq: int):
    """SPEC steps 1-2 in float32: v = alpha * x, zero-padded to 8 * Kq columns, cut into 8 planes of Kq; per plane
    d = absmax / 127 and q = clamp(round_half_even(v * (127 / absmax)), -127, 127). Returns (q [M, 8, Kq] int,
    d [M, 8, 1] float32)."""
    x = np.asarray(x, np.float32).reshape(-1, np.shape(x)[-1])
    v = np.zeros((x.shape[0], 8 * kq), np.float32)
    v[:, :x.shape[1]] = x * np.asarray(alpha, np.float32).reshape(1, -1)
    planes = v.reshape(x.shape[0], 8, kq)
    amax = np.abs(planes).max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        inverse = np.where(amax > 0, np.float32(127.0) / amax, np.float32(0.0)).astype(np.float32)
    q = np.clip(np.rint(planes * inverse), -127, 127).astype(np.int64)  # np.rint: half to even
    return q, (amax / np.float32(127.0)).astype(np.float32)


def binary_linear_int8(x, signs, alpha, beta, kq: int | None = None):
    """The operator (SPEC step 3) in float64 from the signs [N, K]: sum_j d_j * (signs of plane j) . q_j + beta . x."""
    signs = np.asarray(signs, np.int64)
    n, k = signs.shape
    kq = sign_columns(k) if kq is None else kq
    q, d = quantized_planes(x, alpha, kq)
    padded = np.zeros((n, 8 * kq), np.int64)
    padded[:, :k] = signs
    dots = np.einsum("mjb,njb->mnj", q, padded.reshape(n, 8, kq))  # exact integers
    shift = np.asarray(x, np.float64).reshape(-1, k) @ np.asarray(beta, np.float64).reshape(-1)
    out = (dots * d.astype(np.float64).transpose(0, 2, 1)).sum(-1) + shift[:, None]
    return out.reshape(*np.shape(x)[:-1], n)


def sign_columns(k: int) -> int:
    """``Kq = ceil(K / 8)``, the fewest packed bytes per row."""
    return -(-k // 8)


def pack_signs(signs, kq: int | None = None):
    """Signs [N, K] in {-1, +1} -> planar uint8 [N, Kq]: bit j of byte b is column ``j * Kq + b`` (1 -> +1);
    padding bits are 0."""
    signs = np.asarray(signs)
    n, k = signs.shape
    kq = sign_columns(k) if kq is None else kq
    bits = np.zeros((n, 8 * kq), dtype=np.uint8)
    bits[:, :k] = signs > 0
    return sum(bits[:, j * kq:(j + 1) * kq] << j for j in range(8)).astype(np.uint8)


def unpack_signs(w_signs, in_features: int):
    """Planar uint8 [N, Kq] -> signs int8 [N, K] in {-1, +1}."""
    w_signs = np.asarray(w_signs, np.uint8)
    planes = [(w_signs >> j) & 1 for j in range(8)]  # plane j holds columns j * Kq .. (j + 1) * Kq - 1
    return np.concatenate(planes, axis=1)[:, :in_features].astype(np.int8) * 2 - 1


# ---- the operator at its schema, and the cases every runtime's implementation is checked on ----
TOLERANCE = 1e-5  # max |out - reference| over max |reference|: float32 sums of the exact plane dot products


def reference(x, w_signs, alpha, beta, in_features):
    """``edgebit::binary_linear(x, w_signs, alpha, beta, in_features)`` -> (out,), float64."""
    w_signs = np.asarray(w_signs, np.uint8)
    return (binary_linear_int8(x, unpack_signs(w_signs, in_features), alpha, beta, w_signs.shape[1]),)


def cases() -> dict:
    """{name: schema arguments}: K not a multiple of 8, padded rows (Kq > ceil(K/8)), row blocks, leading dims, and
    rows of whole 64-byte vector steps plus a tail (Kq 140)."""
    result = {}
    for k, kq, n in ((53, 7, 29), (75, 10, 9), (300, 40, 130), (1100, 140, 21)):
        rng = np.random.default_rng(k)
        signs = rng.choice([-1, 1], (n, k))
        alpha = rng.uniform(0.01, 0.2, (1, k)).astype(np.float32)
        beta = rng.normal(0, 0.05, (1, k)).astype(np.float32)
        x = rng.standard_normal((1, 4, k)).astype(np.float32)
        result[f"k{k}-kq{kq}-n{n}"] = (x, pack_signs(signs, kq), alpha, beta, k)
    return result
