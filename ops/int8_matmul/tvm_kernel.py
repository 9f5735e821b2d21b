"""TVM 0.27 kernels of ``edgebit::int8_linear`` (see SPEC.md).

* :func:`int8_extern_kernel` — x86-64 and arm64: a TensorIR function that calls the operator's C++ kernel
  (``kernel.h``: AVX-512 VNNI / AVX2 / NEON sdot, the one ONNX Runtime and ExecuTorch run) through ``call_extern``;
  ``tvm_adapter.cc`` is compiled for the target and linked into the model library
  (:mod:`edgebit.runtimes.tvm.extern_kernels`).
* :func:`int8_linear_te` — portable tensor-expression kernel (riscv64 RVV): LLVM vectorizes the int32 block sums.

The number of tokens ``M`` is symbolic, so one compiled kernel serves prefill and decode.
"""

from __future__ import annotations

from tvm import te, tirx
from tvm.script import tirx as T


def _block_quantize_te(x, in_features: int, padded: int, block: int):
    """SPEC steps 1-2 as tensor expressions: (q int8 [M, Kp], d float32 [M, blocks])."""
    m = x.shape[0]
    blocks = padded // block
    i = te.reduce_axis((0, block), name="i")

    def value(t, col):
        return tirx.if_then_else(col < in_features, x[t, tirx.min(col, in_features - 1)], tirx.const(0.0, "float32"))

    amax = te.compute((m, blocks), lambda t, b: te.max(te.abs(value(t, b * block + i)), axis=i), name="amax")
    inverse = te.compute((m, blocks), lambda t, b: tirx.if_then_else(
        amax[t, b] > 0, tirx.const(127.0, "float32") / amax[t, b], tirx.const(0.0, "float32")), name="inverse")
    q = te.compute((m, padded), lambda t, col: te.max(te.min(
        tirx.nearbyint(value(t, col) * inverse[t, col // block]), tirx.const(127.0, "float32")),
        tirx.const(-127.0, "float32")).astype("int8"), name="q")
    d = te.compute((m, blocks), lambda t, b: amax[t, b] / tirx.const(127.0, "float32"), name="d")
    return q, d


def int8_linear_te(x: te.Tensor, w_codes: te.Tensor, w_scale: te.Tensor, in_features: int, block: int) -> te.Tensor:
    """x float32 [M, K], w_codes uint8 [N, Kp], w_scale float32 [N] -> float32 [M, N]."""
    m = x.shape[0]
    n, padded = (int(v) for v in w_codes.shape)
    blocks = padded // block
    q, d = _block_quantize_te(x, int(in_features), padded, block)
    i = te.reduce_axis((0, block), name="i")
    dots = te.compute((m, n, blocks), lambda t, row, b: te.sum(
        q[t, b * block + i].astype("int32") * (w_codes[row, b * block + i].astype("int32") - 128), axis=i),
        name="block_dots")
    bb = te.reduce_axis((0, blocks), name="bb")
    acc = te.compute((m, n), lambda t, row: te.sum(dots[t, row, bb].astype("float32") * d[t, bb], axis=bb),
                     name="acc")
    return te.compute((m, n), lambda t, row: acc[t, row] * w_scale[row], name="out")


EXTERN_SYMBOL = "edgebit_int8_linear"  # tvm_adapter.cc
EXTERN_SOURCE = "int8_matmul/tvm_adapter.cc"


def int8_extern_kernel(n: int, k: int, padded: int, block: int, name: str):
    """PrimFunc(x float32 [M, K], w_codes uint8 [N, Kp], w_scale float32 [N], out float32 [M, N]) that calls the C++
    kernel (kernel.h through tvm_adapter.cc, linked into the model library). A TensorIR kernel of the same loops ran
    at half the C++ kernel's read bandwidth on one thread (LLVM kept its accumulators in memory and reordered the row
    reads), so TVM shares ONNX Runtime's and ExecuTorch's kernel."""

    @T.prim_func(s_tir=True)
    def kernel(x_handle: T.handle, w_codes: T.Buffer((n, padded), "uint8"), w_scale: T.Buffer((n,), "float32"),
               out_handle: T.handle):
        T.func_attr({"global_symbol": name, "tir.noalias": True})
        m = T.int64()
        x = T.match_buffer(x_handle, (m, k), "float32")
        out = T.match_buffer(out_handle, (m, n), "float32")
        T.evaluate(T.call_extern("int32", EXTERN_SYMBOL, x.data, w_codes.data, w_scale.data, out.data, m,
                                 T.int64(k), T.int64(n), T.int64(padded), T.int64(block)))

    return kernel
