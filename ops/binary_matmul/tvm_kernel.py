"""TVM 0.27 kernels of ``edgebit::binary_linear`` (SPEC.md): activations quantized to int8 per plane, exact plane
dot products with the sign bits.

* :func:`binary_extern_kernel` — x86-64 and arm64: a TensorIR function that calls the operator's C++ kernel
  (``kernel.h``: AVX-512 VNNI ``vpdpbusd`` on the bytes masked to one bit, NEON ``sdot``; the one ONNX Runtime and
  ExecuTorch run) through ``call_extern``; ``tvm_adapter.cc`` is linked into the model library
  (:mod:`edgebit.runtimes.tvm.extern_kernels`), as the quantized heads'.
* :func:`binary_linear_te` — the definition as tensor expressions, the kernel TVM compiles elsewhere (riscv64 RVV).

The number of tokens ``M`` is symbolic, so one compiled kernel serves prefill and decode.
"""

from __future__ import annotations

from tvm import te, tirx
from tvm.script import tirx as T

from edgebit_ops.int8_matmul.tvm_kernel import _block_quantize_te

BITS = 8


def binary_linear_te(x: te.Tensor, w_signs: te.Tensor, alpha: te.Tensor, beta: te.Tensor,
                     in_features: int) -> te.Tensor:
    """x float32 [M, K], w_signs uint8 [N, Kq], alpha/beta float32 [1, K] -> float32 [M, N]."""
    m = x.shape[0]
    k = int(in_features)
    n, kq = (int(v) for v in w_signs.shape)
    scaled = te.compute((m, k), lambda t, i: x[t, i] * alpha[0, i], name="scaled")
    q, d = _block_quantize_te(scaled, k, BITS * kq, kq)  # SPEC steps 1-2: the blocks are the planes
    b = te.reduce_axis((0, kq), name="b")
    one = tirx.const(1, "uint8")
    plane_dots = te.compute((m, n, BITS), lambda t, row, j: te.sum(tirx.Select(
        tirx.bitwise_and(tirx.shift_right(w_signs[row, b], j.astype("uint8")), one) == one,
        q[t, j * kq + b].astype("int32"), -q[t, j * kq + b].astype("int32")), axis=b), name="plane_dots")
    i = te.reduce_axis((0, k), name="i")
    shift = te.compute((m,), lambda t: te.sum(x[t, i] * beta[0, i], axis=i), name="shift")
    j = te.reduce_axis((0, BITS), name="j")
    acc = te.compute((m, n), lambda t, row: te.sum(plane_dots[t, row, j].astype("float32") * d[t, j], axis=j),
                     name="acc")
    return te.compute((m, n), lambda t, row: acc[t, row] + shift[t], name="out")


EXTERN_SYMBOL = "edgebit_binary_linear"  # tvm_adapter.cc
EXTERN_SOURCE = "binary_matmul/tvm_adapter.cc"


def binary_extern_kernel(n: int, k: int, kq: int, name: str):
    """PrimFunc(x float32 [M, K], w_signs uint8 [N, Kq], alpha [1, K], beta [1, K], out float32 [M, N]) that calls
    the C++ kernel (kernel.h through tvm_adapter.cc, linked into the model library)."""

    @T.prim_func(s_tir=True)
    def kernel(x_handle: T.handle, w_signs: T.Buffer((n, kq), "uint8"), alpha: T.Buffer((1, k), "float32"),
               beta: T.Buffer((1, k), "float32"), out_handle: T.handle):
        T.func_attr({"global_symbol": name, "tir.noalias": True})
        m = T.int64()
        x = T.match_buffer(x_handle, (m, k), "float32")
        out = T.match_buffer(out_handle, (m, n), "float32")
        T.evaluate(T.call_extern("int32", EXTERN_SYMBOL, x.data, w_signs.data, alpha.data, beta.data, out.data, m,
                                 T.int64(k), T.int64(n), T.int64(kq)))

    return kernel
