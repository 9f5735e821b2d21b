"""TVM 0.27 kernels of ``edgebit::int8_linear`` (see SPEC.md).

* :func:`int8_linear_te` — portable tensor-expression kernel (riscv64 RVV, arm64 without ``dotprod``): LLVM
  vectorizes the int32 block sums.
* :func:`int8_dot_kernel` — hand-scheduled TensorIR for ISAs with an int8 dot product: the activations are
  quantized once per call, then rows run in parallel blocks; per row and token, an int32 vector accumulator per
  block (AVX-512 VNNI ``vpdpbusd`` on the unsigned codes, ARMv8.2 ``sdot`` or AVX2 ``pmaddwd`` on the signed
  weights), scaled into a float vector accumulator by the block's activation scale, one horizontal sum at the end.
  ``vpdpbusd`` multiplies the codes ``w + 128``: the ``128 * sum(q)`` it adds is taken off once per token.

The number of tokens ``M`` is symbolic, so one compiled kernel serves prefill and decode.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import te, tirx
from tvm.script import tirx as T

ROWS_PER_TASK = 32


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


@dataclass(frozen=True)
class Int8Dot:
    """One step ``acc[int32 x acc_lanes] += sum over lane groups of w * q`` on ``lanes`` int8 columns."""

    lanes: int
    acc_lanes: int
    kind: str  # "vnni": u8 codes x s8 q; "sdot": s8 x s8; "madd": s8 widened to s16, pmaddwd

    @property
    def takes_codes(self) -> bool:
        return self.kind == "vnni"

    def update(self, acc, weights, q):
        if self.kind == "vnni":
            return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"), acc,
                                           weights, q, dtype=f"int32x{self.acc_lanes}")
        if self.kind == "sdot":
            return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.sdot.v4i32.v16i8"), acc,
                                           weights, q, dtype=f"int32x{self.acc_lanes}")
        return acc + T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                                             T.Cast(f"int16x{self.lanes}", weights), T.Cast(f"int16x{self.lanes}", q),
                                             dtype=f"int32x{self.acc_lanes}")


INT8_DOTS = {"avx512vnni": Int8Dot(64, 16, "vnni"), "dotprod": Int8Dot(16, 4, "sdot"), "avx2": Int8Dot(16, 8, "madd")}


def int8_dot_isa(features: tuple[str, ...], block: int) -> str | None:
    """The dot-product kernel a target's features allow for this block size, or None for the portable kernel."""
    for isa, ins in INT8_DOTS.items():
        if isa in features and block % ins.lanes == 0:
            return isa
    return None


def int8_dot_kernel(n: int, k: int, padded: int, block: int, isa: str, name: str):
    """PrimFunc(x float32 [M, K], w_codes uint8 [N, Kp], w_scale float32 [N], out float32 [M, N]), M symbolic."""
    ins = INT8_DOTS[isa]
    lanes, acc_lanes, update = ins.lanes, ins.acc_lanes, ins.update
    blocks, chunks = padded // block, block // lanes
    byte_type = f"int8x{lanes}"
    tasks = (n + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    unsigned = ins.takes_codes

    @T.prim_func(s_tir=True)
    def kernel(x_handle: T.handle, w_codes: T.Buffer((n, padded), "uint8"), w_scale: T.Buffer((n,), "float32"),
               out_handle: T.handle):
        T.func_attr({"global_symbol": name, "tir.noalias": True})
        m = T.int64()
        x = T.match_buffer(x_handle, (m, k), "float32")
        out = T.match_buffer(out_handle, (m, n), "float32")
        q = T.alloc_buffer((m, padded), "int8")
        d = T.alloc_buffer((m, blocks), "float32")
        correction = T.alloc_buffer((m,), "float32")
        for t in range(m):
            with T.sblock("quantize"):
                T.reads(x[t, 0:k])
                T.writes(q[t, 0:padded], d[t, 0:blocks], correction[t])
                amax = T.alloc_buffer((1,), "float32")
                total = T.alloc_buffer((1,), "int32")
                correction[t] = T.float32(0)
                for b in range(blocks):
                    amax[0] = T.float32(0)
                    for i in range(block):
                        if b * block + i < k:
                            amax[0] = T.max(amax[0], T.fabs(x[t, b * block + i]))
                    d[t, b] = amax[0] / T.float32(127)
                    total[0] = 0
                    for i in range(block):
                        if b * block + i < k and amax[0] > T.float32(0):
                            q[t, b * block + i] = T.Cast("int8", T.max(T.min(T.nearbyint(
                                x[t, b * block + i] * (T.float32(127) / amax[0])), T.float32(127)), T.float32(-127)))
                        else:
                            q[t, b * block + i] = T.int8(0)
                        total[0] = total[0] + T.Cast("int32", q[t, b * block + i])
                    correction[t] = correction[t] + T.Cast("float32", total[0] * 128) * d[t, b]
        for task in T.parallel(tasks):
            with T.sblock("dot"):
                T.reads(w_codes[task * ROWS_PER_TASK:task * ROWS_PER_TASK + ROWS_PER_TASK, 0:padded],
                        q[0:m, 0:padded], d[0:m, 0:blocks], correction[0:m],
                        w_scale[task * ROWS_PER_TASK:task * ROWS_PER_TASK + ROWS_PER_TASK])
                T.writes(out[0:m, task * ROWS_PER_TASK:task * ROWS_PER_TASK + ROWS_PER_TASK])
                iacc = T.alloc_buffer((acc_lanes,), "int32", scope="local")
                facc = T.alloc_buffer((acc_lanes,), "float32", scope="local")
                total = T.alloc_buffer((1,), "float32", scope="local")
                for r in range(ROWS_PER_TASK):
                    for t in range(m):
                        if task * ROWS_PER_TASK + r < n:
                            row = task * ROWS_PER_TASK + r
                            facc[T.ramp(0, 1, acc_lanes)] = T.broadcast(T.float32(0), acc_lanes)
                            for b in range(blocks):
                                iacc[T.ramp(0, 1, acc_lanes)] = T.broadcast(T.int32(0), acc_lanes)
                                for c in T.unroll(chunks):
                                    if unsigned:
                                        iacc[T.ramp(0, 1, acc_lanes)] = update(
                                            iacc[T.ramp(0, 1, acc_lanes)],
                                            T.reinterpret(w_codes[row, T.ramp(b * block + c * lanes, 1, lanes)],
                                                          dtype=byte_type),
                                            q[t, T.ramp(b * block + c * lanes, 1, lanes)])
                                    else:
                                        iacc[T.ramp(0, 1, acc_lanes)] = update(
                                            iacc[T.ramp(0, 1, acc_lanes)],
                                            T.reinterpret(T.bitwise_xor(
                                                w_codes[row, T.ramp(b * block + c * lanes, 1, lanes)],
                                                T.broadcast(T.uint8(128), lanes)), dtype=byte_type),
                                            q[t, T.ramp(b * block + c * lanes, 1, lanes)])
                                facc[T.ramp(0, 1, acc_lanes)] = facc[T.ramp(0, 1, acc_lanes)] + T.Cast(
                                    f"float32x{acc_lanes}", iacc[T.ramp(0, 1, acc_lanes)]) * T.broadcast(
                                    d[t, b], acc_lanes)
                            total[0] = T.float32(0)
                            for lane in range(acc_lanes):
                                total[0] = total[0] + facc[lane]
                            if unsigned:
                                out[t, row] = (total[0] - correction[t]) * w_scale[row]
                            else:
                                out[t, row] = total[0] * w_scale[row]

    return kernel
