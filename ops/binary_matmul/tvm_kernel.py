"""TVM 0.27 kernel of ``edgebit::binary_linear`` (SPEC.md): ``sign(W) @ (alpha * x) + (beta . x)``.

First form: a tensor-expression kernel (1-bit planes decoded with a shift and a mask, sign applied by select) that
LLVM compiles for every target; M (tokens) is symbolic so it serves prefill and decode. A dot-product micro-kernel
like the ternary one is the next step for speed.
"""

from __future__ import annotations

from tvm import te, tirx

BITS = 8


def binary_linear_te(x: te.Tensor, w_signs: te.Tensor, alpha: te.Tensor, beta: te.Tensor,
                     in_features: int) -> te.Tensor:
    """x float32 [M, K], w_signs uint8 [N, Kq], alpha/beta float32 [1, K] -> float32 [M, N]."""
    m = x.shape[0]
    k_true = int(in_features)
    n, kq = w_signs.shape
    k_padded = BITS * int(kq)
    zero = tirx.const(0.0, "float32")
    scaled = te.compute((m, k_padded), lambda t, i: tirx.if_then_else(
        i < k_true, x[t, tirx.min(i, k_true - 1)] * alpha[0, tirx.min(i, k_true - 1)], zero), name="scaled")
    k = te.reduce_axis((0, k_true), name="k")
    shift = te.compute((m,), lambda t: te.sum(x[t, k] * beta[0, k], axis=k), name="shift")
    plane = te.reduce_axis((0, BITS), name="plane")
    b = te.reduce_axis((0, kq), name="b")
    acc = te.compute((m, n), lambda t, row: te.sum(tirx.Select(
        ((w_signs[row, b] >> plane.astype("uint8")) & tirx.const(1, "uint8")) == tirx.const(1, "uint8"),
        scaled[t, plane * kq + b], -scaled[t, plane * kq + b]), axis=[plane, b]), name="acc")
    return te.compute((m, n), lambda t, row: acc[t, row] + shift[t], name="out")
