"""TVM 0.27 kernels of ``edgebit::q4_linear`` (see SPEC.md).

* :func:`q4_extern_kernel` — x86-64 and arm64: a TensorIR function that calls the operator's C++ kernel
  (``kernel.h``, the one ONNX Runtime and ExecuTorch run) through ``call_extern``; ``tvm_adapter.cc`` is compiled for
  the target and linked into the model library (:mod:`edgebit.runtimes.tvm.extern_kernels`), as the int8 head's.
* :func:`q4_linear_te` — portable tensor-expression kernel (riscv64 RVV).

The number of tokens ``M`` is symbolic, so one compiled kernel serves prefill and decode.
"""

from __future__ import annotations

from tvm import te, tirx
from tvm.script import tirx as T

from edgebit_ops.int8_matmul.tvm_kernel import _block_quantize_te


def q4_linear_te(x: te.Tensor, w_codes: te.Tensor, w_scale: te.Tensor, in_features: int, block: int) -> te.Tensor:
    """x float32 [M, K], w_codes uint8 [N, Kp / 2], w_scale float32 [N, Kp / B] -> float32 [M, N]."""
    m = x.shape[0]
    n, half_padded = (int(v) for v in w_codes.shape)
    padded, half = half_padded * 2, block // 2
    blocks = padded // block
    q, d = _block_quantize_te(x, int(in_features), padded, block)
    i = te.reduce_axis((0, half), name="i")

    def weight(row, b, j, high: bool):
        code = w_codes[row, b * half + j].astype("int32")
        return (tirx.shift_right(code, 4) if high else tirx.bitwise_and(code, 15)) - 8

    dots = te.compute((m, n, blocks), lambda t, row, b: te.sum(
        q[t, b * block + i].astype("int32") * weight(row, b, i, False)
        + q[t, b * block + half + i].astype("int32") * weight(row, b, i, True), axis=i), name="block_dots")
    bb = te.reduce_axis((0, blocks), name="bb")
    return te.compute((m, n), lambda t, row: te.sum(
        dots[t, row, bb].astype("float32") * d[t, bb] * w_scale[row, bb], axis=bb), name="out")


EXTERN_SYMBOL = "edgebit_q4_linear"  # tvm_adapter.cc
EXTERN_SOURCE = "q4_matmul/tvm_adapter.cc"


def q4_extern_kernel(n: int, k: int, padded: int, block: int, name: str):
    """PrimFunc(x float32 [M, K], w_codes uint8 [N, Kp / 2], w_scale float32 [N, Kp / B], out float32 [M, N]) that
    calls the C++ kernel (kernel.h through tvm_adapter.cc, linked into the model library)."""

    @T.prim_func(s_tir=True)
    def kernel(x_handle: T.handle, w_codes: T.Buffer((n, padded // 2), "uint8"),
               w_scale: T.Buffer((n, padded // block), "float32"), out_handle: T.handle):
        T.func_attr({"global_symbol": name, "tir.noalias": True})
        m = T.int64()
        x = T.match_buffer(x_handle, (m, k), "float32")
        out = T.match_buffer(out_handle, (m, n), "float32")
        T.evaluate(T.call_extern("int32", EXTERN_SYMBOL, x.data, w_codes.data, w_scale.data, out.data, m,
                                 T.int64(k), T.int64(n), T.int64(padded), T.int64(block)))

    return kernel
