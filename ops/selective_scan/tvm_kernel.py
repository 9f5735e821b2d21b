"""TVM 0.27 kernel of ``edgebit::selective_scan`` (SPEC.md) for a batch of one: the recurrence over a symbolic
number of tokens T, heads in parallel, each state row of length N updated 16 lanes at a time (vector FMA), with
its dot product against C in a vector accumulator.

``S = S * exp(dt * A) + dt * x * B``; ``y = S . C + D * x``. The same compiled function serves prefill (T tokens)
and decode (T = 1); the state in is copied to the state out, which then carries the recurrence.
"""

from __future__ import annotations

from tvm.script import tirx as T


LANES = 16


def selective_scan_kernel(heads: int, head_dim: int, groups: int, state: int, name: str):
    """PrimFunc(x [1,T,H,P], dt [1,T,H], A [H], B [1,T,G,N], C [1,T,G,N], D [H], s_in [1,H,P,N],
    y [1,T,H,P], s_out [1,H,P,N]), all float32."""
    per_group = heads // groups
    chunks = state // LANES

    @T.prim_func(s_tir=True)
    def kernel(x_handle: T.handle, dt_handle: T.handle, A: T.Buffer((heads,), "float32"), b_handle: T.handle,
               c_handle: T.handle, D: T.Buffer((heads,), "float32"),
               s_in: T.Buffer((1, heads, head_dim, state), "float32"), y_handle: T.handle,
               s_out: T.Buffer((1, heads, head_dim, state), "float32")):
        T.func_attr({"global_symbol": name, "tir.noalias": True})
        length = T.int64()
        x = T.match_buffer(x_handle, (1, length, heads, head_dim), "float32")
        dt = T.match_buffer(dt_handle, (1, length, heads), "float32")
        B = T.match_buffer(b_handle, (1, length, groups, state), "float32")
        C = T.match_buffer(c_handle, (1, length, groups, state), "float32")
        y = T.match_buffer(y_handle, (1, length, heads, head_dim), "float32")
        for h in T.parallel(heads):
            with T.sblock("scan"):
                T.reads(x[0, 0:length, h, 0:head_dim], dt[0, 0:length, h], A[h], D[h],
                        B[0, 0:length, h // per_group, 0:state], C[0, 0:length, h // per_group, 0:state],
                        s_in[0, h, 0:head_dim, 0:state])
                T.writes(y[0, 0:length, h, 0:head_dim], s_out[0, h, 0:head_dim, 0:state])
                # Default scope on purpose: small "global" scratch lives on the stack (registers after LLVM);
                # "local" scratch would become heap workspace with loads and stores in the loop.
                acc = T.alloc_buffer((LANES,), "float32")
                total = T.alloc_buffer((1,), "float32")
                for p in range(head_dim):
                    for n in range(state):
                        s_out[0, h, p, n] = s_in[0, h, p, n]
                    for t in range(length):
                        acc[T.ramp(0, 1, LANES)] = T.broadcast(T.float32(0), LANES)
                        for c in range(chunks):
                            s_out[0, h, p, T.ramp(c * LANES, 1, LANES)] = (
                                s_out[0, h, p, T.ramp(c * LANES, 1, LANES)]
                                * T.broadcast(T.exp(dt[0, t, h] * A[h]), LANES)
                                + T.broadcast(dt[0, t, h] * x[0, t, h, p], LANES)
                                * B[0, t, h // per_group, T.ramp(c * LANES, 1, LANES)])
                            acc[T.ramp(0, 1, LANES)] = acc[T.ramp(0, 1, LANES)] + (
                                s_out[0, h, p, T.ramp(c * LANES, 1, LANES)]
                                * C[0, t, h // per_group, T.ramp(c * LANES, 1, LANES)])
                        total[0] = T.float32(0)
                        for lane in range(LANES):
                            total[0] = total[0] + acc[lane]
                        for n in range(chunks * LANES, state):
                            s_out[0, h, p, n] = s_out[0, h, p, n] * T.exp(dt[0, t, h] * A[h]) + \
                                dt[0, t, h] * x[0, t, h, p] * B[0, t, h // per_group, n]
                            total[0] = total[0] + s_out[0, h, p, n] * C[0, t, h // per_group, n]
                        y[0, t, h, p] = total[0] + D[h] * x[0, t, h, p]

    return kernel
