"""TVM 0.27 kernels of ``edgebit::ternary_linear`` (see SPEC.md), one per instruction-set family.

Both kernels compute the spec exactly: per-token absmax int8 codes (``nearbyint`` = round half to even), an int32
dot product with the ternary weights, then ``/ scale * w_scale``. The weight code ``c = w + 1`` is in {0, 1, 2}, so
``sum_k w*x = sum_k c*x - sum_k x``: the kernels multiply the unsigned 2-bit codes by the signed activation codes
(the shape of u8 x s8 dot-product instructions) and subtract the per-token activation sum once.

* :func:`ternary_linear_te` — portable tensor-expression kernel. LLVM vectorizes its reduction on every ISA
  (AVX2 on x86, NEON and even ``sdot`` on arm64, RVV on riscv64).
* :func:`dot_product_kernel` — hand-scheduled TensorIR micro-kernel for ISAs with a 4-way int8 dot-product
  instruction (AVX-512 VNNI ``vpdpbusd``, ARMv8.2 ``sdot``): decode a 2-bit plane with one shift and mask, feed
  it with a contiguous slice of activation codes to the instruction, four independent accumulators (one per plane)
  to hide the instruction's latency, a scalar tail for ``Kq % vector_bytes``, rows in parallel blocks of 16.

The number of tokens ``M`` is symbolic, so one compiled kernel serves prefill and decode.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import te, tirx
from tvm.script import tirx as T


def ternary_linear_te(x: te.Tensor, w_packed: te.Tensor, w_scale: te.Tensor, in_features: int) -> te.Tensor:
    """x float32 [M, K], w_packed uint8 [N, Kq], w_scale float32 [1] -> float32 [M, N]."""
    m = x.shape[0]
    k_true = int(in_features)
    n, kq = w_packed.shape
    k_padded = 4 * int(kq)
    k = te.reduce_axis((0, k_true), name="k")
    amax = te.compute((m,), lambda t: te.max(te.abs(x[t, k]), axis=k), name="amax")
    scale = te.compute((m,), lambda t: tirx.const(127.0, "float32") / te.max(amax[t], tirx.const(1e-5, "float32")),
                       name="act_scale")

    def code(t, i):
        q = te.max(te.min(tirx.nearbyint(x[t, i] * scale[t]), tirx.const(127.0, "float32")),
                   tirx.const(-128.0, "float32")).astype("int8")
        return q if k_true == k_padded else tirx.if_then_else(i < k_true, q, tirx.const(0, "int8"))

    codes = te.compute((m, k_padded), code, name="codes")
    kk = te.reduce_axis((0, k_padded), name="kk")
    code_sum = te.compute((m,), lambda t: te.sum(codes[t, kk].astype("int32"), axis=kk), name="code_sum")
    plane = te.reduce_axis((0, 4), name="plane")
    b = te.reduce_axis((0, kq), name="b")
    acc = te.compute(
        (m, n),
        lambda t, row: te.sum(
            ((w_packed[row, b] >> (plane * 2).astype("uint8")) & tirx.const(3, "uint8")).astype("int32")
            * codes[t, plane * kq + b].astype("int32"),
            axis=[plane, b]),
        name="acc")
    return te.compute((m, n), lambda t, row: (acc[t, row] - code_sum[t]).astype("float32") / scale[t] * w_scale[0],
                      name="out")


@dataclass(frozen=True)
class DotInstruction:
    """How one accumulator step ``acc += sum over groups of 4 bytes of u8 codes * s8 activations`` is emitted."""

    vector_bytes: int  # int8 lanes per step
    accumulator_lanes: int  # int32 lanes

    def update(self, acc, codes, activations):
        raise NotImplementedError


@dataclass(frozen=True)
class FusedDot(DotInstruction):
    """One instruction does it all (AVX-512 VNNI vpdpbusd, ARMv8.2 sdot)."""

    llvm_intrinsic: str = ""

    def update(self, acc, codes, activations):
        return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(self.llvm_intrinsic), acc, codes, activations,
                                       dtype=f"int32x{self.accumulator_lanes}")


@dataclass(frozen=True)
class Avx2Dot(DotInstruction):
    """AVX2 has no 4-way dot product: pmaddubsw (u8 x s8 -> pairs summed to i16; codes <= 2 keep it from
    saturating) then pmaddwd against ones (pairs of i16 -> i32)."""

    def update(self, acc, codes, activations):
        pairs = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"), codes, activations,
                                        dtype="int16x16")
        quads = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), pairs,
                                        T.broadcast(T.int16(1), 16), dtype="int32x8")
        return acc + quads


# LLVM 22's vpdpbusd takes <64 x i8> operands (TVM's registered VNNI tensor intrinsic predates that and fails).
DOT_INSTRUCTIONS = {
    "avx512vnni": FusedDot(64, 16, "llvm.x86.avx512.vpdpbusd.512"),
    "dotprod": FusedDot(16, 4, "llvm.aarch64.neon.sdot.v4i32.v16i8"),
    "avx2": Avx2Dot(32, 8),
}
ROWS_PER_TASK = 16


EXTERN_SYMBOL = "edgebit_ternary_linear"  # tvm_adapter.cc: the C++ kernel's register-blocked GEMM
EXTERN_SOURCE = "ternary_matmul/tvm_adapter.cc"


def dot_product_kernel(n: int, k: int, kq: int, isa: str, name: str, extern_prefill: bool = False,
                       extern_decode: bool = False):
    """PrimFunc(x float32 [M, K], w_packed uint8 [N, Kq], w_scale float32 [1], out float32 [M, N]), M symbolic.
    With ``extern_prefill`` (targets whose model library links the C++ kernels), M > 1 calls kernel.h's blocked GEMM
    (EXTERN_SYMBOL), which decodes each weight vector once for several tokens; M = 1 (decode) runs the loops below,
    or kernel.h as well with ``extern_decode`` (AVX-512 VNNI: its four-row GEMV streams 1.3-1.5x faster)."""
    ins = DOT_INSTRUCTIONS[isa]
    lanes, acc_lanes = ins.vector_bytes, ins.accumulator_lanes
    update = ins.update
    k_padded = 4 * kq
    chunks = kq // lanes
    byte_type = f"int8x{lanes}"
    tasks = (n + ROWS_PER_TASK - 1) // ROWS_PER_TASK

    @T.macro
    def gemv(x, w_packed, w_scale, out, m):
        codes = T.alloc_buffer((m, k_padded), "int8")
        scale = T.alloc_buffer((m,), "float32")
        code_sum = T.alloc_buffer((m,), "int32")
        for t in range(m):
            with T.sblock("quantize"):
                T.reads(x[t, 0:k])
                T.writes(codes[t, 0:k_padded], scale[t], code_sum[t])
                amax = T.alloc_buffer((1,), "float32")
                total = T.alloc_buffer((1,), "int32")
                amax[0] = T.float32(0)
                for i in range(k):
                    amax[0] = T.max(amax[0], T.fabs(x[t, i]))
                scale[t] = T.float32(127) / T.max(amax[0], T.float32(1e-5))
                total[0] = 0
                for i in range(k_padded):
                    if i < k:
                        codes[t, i] = T.Cast("int8", T.max(T.min(T.nearbyint(x[t, i] * scale[t]), T.float32(127)),
                                                           T.float32(-128)))
                    else:
                        codes[t, i] = T.int8(0)
                    total[0] = total[0] + T.Cast("int32", codes[t, i])
                code_sum[t] = total[0]
        for task in T.parallel(tasks):
            with T.sblock("dot"):
                T.reads(w_packed[task * ROWS_PER_TASK:task * ROWS_PER_TASK + ROWS_PER_TASK, 0:kq],
                        codes[0:m, 0:k_padded], code_sum[0:m], scale[0:m], w_scale[0])
                T.writes(out[0:m, task * ROWS_PER_TASK:task * ROWS_PER_TASK + ROWS_PER_TASK])
                acc = T.alloc_buffer((4, acc_lanes), "int32")  # one accumulator per bit plane
                total = T.alloc_buffer((1,), "int32")
                for r in range(ROWS_PER_TASK):
                    for t in range(m):
                        if task * ROWS_PER_TASK + r < n:
                            row = task * ROWS_PER_TASK + r
                            for j in T.unroll(4):
                                acc[j, T.ramp(0, 1, acc_lanes)] = T.broadcast(T.int32(0), acc_lanes)
                            for c in range(chunks):
                                for j in T.unroll(4):
                                    acc[j, T.ramp(0, 1, acc_lanes)] = update(
                                        acc[j, T.ramp(0, 1, acc_lanes)],
                                        T.reinterpret(T.bitwise_and(
                                            T.shift_right(w_packed[row, T.ramp(c * lanes, 1, lanes)],
                                                          T.broadcast(T.uint8(2 * j), lanes)),
                                            T.broadcast(T.uint8(3), lanes)), dtype=byte_type),
                                        codes[t, T.ramp(j * kq + c * lanes, 1, lanes)])
                            for j in T.unroll(1, 4):
                                acc[0, T.ramp(0, 1, acc_lanes)] = (acc[0, T.ramp(0, 1, acc_lanes)]
                                                                   + acc[j, T.ramp(0, 1, acc_lanes)])
                            total[0] = 0
                            for lane in range(acc_lanes):
                                total[0] = total[0] + acc[0, lane]
                            for b in range(chunks * lanes, kq):
                                for j in range(4):
                                    total[0] = total[0] + T.Cast("int32", T.bitwise_and(
                                        T.shift_right(w_packed[row, b], T.uint8(2 * j)), T.uint8(3))) * T.Cast(
                                        "int32", codes[t, j * kq + b])
                            out[t, row] = T.Cast("float32", total[0] - code_sum[t]) / scale[t] * w_scale[0]

    @T.macro
    def call_kernel_h(x, w_packed, w_scale, out, m):
        T.evaluate(T.call_extern("int32", EXTERN_SYMBOL, x.data, w_packed.data, w_scale.data, out.data, m,
                                 T.int64(k), T.int64(n), T.int64(kq)))

    @T.prim_func(s_tir=True)
    def kernel(x_handle: T.handle, w_packed: T.Buffer((n, kq), "uint8"), w_scale: T.Buffer((1,), "float32"),
               out_handle: T.handle):
        T.func_attr({"global_symbol": name, "tir.noalias": True})
        m = T.int64()
        x = T.match_buffer(x_handle, (m, k), "float32")
        out = T.match_buffer(out_handle, (m, n), "float32")
        if extern_decode:  # Python booleans: the parser keeps only the branch they select
            call_kernel_h(x, w_packed, w_scale, out, m)
        elif extern_prefill and m > 1:
            call_kernel_h(x, w_packed, w_scale, out, m)
        else:
            gemv(x, w_packed, w_scale, out, m)

    return kernel


def dot_isa(features: tuple[str, ...]) -> str | None:
    """The dot-product micro-kernel a target's features allow, or None for the portable kernel."""
    for isa in DOT_INSTRUCTIONS:
        if isa in features:
            return isa
    return None
