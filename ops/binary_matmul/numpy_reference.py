"""``edgebit::binary_linear`` in numpy, written from SPEC.md alone (no edgebit code), in float64."""

from __future__ import annotations

import numpy as np


def w_hat(signs, alpha, beta):
    """``W_hat = alpha * sign(W) + beta`` [N, K] (float64), ``alpha`` and ``beta`` per input column [1, K]."""
    return (np.asarray(alpha, np.float64).reshape(1, -1) * np.asarray(signs, np.float64)
            + np.asarray(beta, np.float64).reshape(1, -1))


def binary_linear(x, signs, alpha, beta):
    """``out = x @ W_hat^T`` (float64) for ``signs`` [N, K] in {-1, +1}."""
    return np.asarray(x, np.float64) @ w_hat(signs, alpha, beta).T


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
TOLERANCE = 1e-5  # max |out - reference| over max |reference|: float32 sums over K


def reference(x, w_signs, alpha, beta, in_features):
    """``edgebit::binary_linear(x, w_signs, alpha, beta, in_features)`` -> (out,), float64."""
    return (binary_linear(x, unpack_signs(w_signs, in_features), alpha, beta),)


def cases() -> dict:
    """{name: schema arguments}: K not a multiple of 8, padded rows (Kq > ceil(K/8)), row blocks, leading dims."""
    result = {}
    for k, kq, n in ((53, 7, 29), (75, 10, 9), (300, 40, 130)):
        rng = np.random.default_rng(k)
        signs = rng.choice([-1, 1], (n, k))
        alpha = rng.uniform(0.01, 0.2, (1, k)).astype(np.float32)
        beta = rng.normal(0, 0.05, (1, k)).astype(np.float32)
        x = rng.standard_normal((1, 4, k)).astype(np.float32)
        result[f"k{k}-kq{kq}-n{n}"] = (x, pack_signs(signs, kq), alpha, beta, k)
    return result
