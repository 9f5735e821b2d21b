"""TVM 0.27 kernel of ``edgebit::binary_linear`` (SPEC.md): ``sign(W) @ (alpha * x) + (beta . x)``.

* :func:`binary_linear_te` — the definition as a tensor expression (reference for the kernel below);
* :func:`binary_linear_kernel` — the kernel edgebit compiles: the scaled activations ``v = alpha * x`` and their
  sum are computed once per token, then each weight row streams through 16 bytes at a time: bit plane j of those
  bytes masks the contiguous activation slice of plane j, accumulated in one float32x16 vector per plane (8
  independent chains), rows in parallel blocks. With P = the sum of v where the sign is +1,
  ``sign(W) @ v = 2 P - sum(v)``: one masked add per 16 weights (AVX-512: vptestmb + a masked load-add) instead
  of a negate-and-blend. The 8 plane vectors are added as vectors before the one horizontal sum per row. M
  (tokens) is symbolic: one kernel for prefill and decode.

Scratch buffers use the default ("global") scope on purpose: TVM 0.27 places small global-scope allocations on the
stack, where LLVM keeps them in registers, but lowers "local" ones to heap workspace calls whose loads and stores
stay in the inner loop (2x slower).
"""

from __future__ import annotations

from tvm import te, tirx
from tvm.script import tirx as T

BITS = 8
LANES = 16
ROWS_PER_TASK = 16


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


def binary_linear_kernel(n: int, k: int, kq: int, name: str):
    """PrimFunc(x float32 [M, K], w_signs uint8 [N, Kq], alpha [1, K], beta [1, K], out float32 [M, N])."""
    k_padded = BITS * kq
    chunks = kq // LANES
    tasks = (n + ROWS_PER_TASK - 1) // ROWS_PER_TASK

    @T.prim_func(s_tir=True)
    def kernel(x_handle: T.handle, w_signs: T.Buffer((n, kq), "uint8"), alpha: T.Buffer((1, k), "float32"),
               beta: T.Buffer((1, k), "float32"), out_handle: T.handle):
        T.func_attr({"global_symbol": name, "tir.noalias": True})
        m = T.int64()
        x = T.match_buffer(x_handle, (m, k), "float32")
        out = T.match_buffer(out_handle, (m, n), "float32")
        scaled = T.alloc_buffer((m, k_padded), "float32")
        shift = T.alloc_buffer((m,), "float32")
        total_scaled = T.alloc_buffer((m,), "float32")
        for t in range(m):
            with T.sblock("prepare"):
                T.reads(x[t, 0:k], alpha[0, 0:k], beta[0, 0:k])
                T.writes(scaled[t, 0:k_padded], shift[t], total_scaled[t])
                total = T.alloc_buffer((2,), "float32")
                total[0] = T.float32(0)
                total[1] = T.float32(0)
                for i in range(k_padded):
                    if i < k:
                        scaled[t, i] = x[t, i] * alpha[0, i]
                        total[0] = total[0] + x[t, i] * beta[0, i]
                        total[1] = total[1] + x[t, i] * alpha[0, i]
                    else:
                        scaled[t, i] = T.float32(0)
                shift[t] = total[0]
                total_scaled[t] = total[1]
        for task in T.parallel(tasks):
            with T.sblock("dot"):
                T.reads(w_signs[task * ROWS_PER_TASK:task * ROWS_PER_TASK + ROWS_PER_TASK, 0:kq],
                        scaled[0:m, 0:k_padded], shift[0:m], total_scaled[0:m])
                T.writes(out[0:m, task * ROWS_PER_TASK:task * ROWS_PER_TASK + ROWS_PER_TASK])
                acc = T.alloc_buffer((BITS, LANES), "float32")
                total = T.alloc_buffer((1,), "float32")
                for r in range(ROWS_PER_TASK):
                    for t in range(m):
                        if task * ROWS_PER_TASK + r < n:
                            row = task * ROWS_PER_TASK + r
                            for j in T.unroll(BITS):
                                acc[j, T.ramp(0, 1, LANES)] = T.broadcast(T.float32(0), LANES)
                            for c in range(chunks):
                                for j in T.unroll(BITS):
                                    acc[j, T.ramp(0, 1, LANES)] = acc[j, T.ramp(0, 1, LANES)] + T.Select(
                                        T.bitwise_and(T.shift_right(w_signs[row, T.ramp(c * LANES, 1, LANES)],
                                                                    T.broadcast(T.uint8(j), LANES)),
                                                      T.broadcast(T.uint8(1), LANES)) == T.broadcast(T.uint8(1), LANES),
                                        scaled[t, T.ramp(j * kq + c * LANES, 1, LANES)],
                                        T.broadcast(T.float32(0), LANES))
                            for j in T.unroll(1, BITS):
                                acc[0, T.ramp(0, 1, LANES)] = acc[0, T.ramp(0, 1, LANES)] + acc[j, T.ramp(0, 1, LANES)]
                            total[0] = T.float32(0)
                            for lane in range(LANES):
                                total[0] = total[0] + acc[0, lane]
                            for b in range(chunks * LANES, kq):
                                for j in range(BITS):
                                    if T.bitwise_and(T.shift_right(w_signs[row, b], T.uint8(j)), T.uint8(1)) == T.uint8(1):
                                        total[0] = total[0] + scaled[t, j * kq + b]
                            out[t, row] = T.float32(2) * total[0] - total_scaled[t] + shift[t]

    return kernel
