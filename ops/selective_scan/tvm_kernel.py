"""TVM 0.27 kernel of ``edgebit::selective_scan`` (SPEC.md) for a batch of one: the recurrence over a symbolic
number of tokens T, heads and head channels in parallel, the state vector of length N in registers' reach.

``S = S * exp(dt * A) + dt * x * B``; ``y = S . C + D * x``. The same compiled function serves prefill (T tokens)
and decode (T = 1); the state in is copied to the state out, which then carries the recurrence.
"""

from __future__ import annotations

from tvm.script import tirx as T


def selective_scan_kernel(heads: int, head_dim: int, groups: int, state: int, name: str):
    """PrimFunc(x [1,T,H,P], dt [1,T,H], A [H], B [1,T,G,N], C [1,T,G,N], D [H], s_in [1,H,P,N],
    y [1,T,H,P], s_out [1,H,P,N]), all float32."""
    per_group = heads // groups

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
                acc = T.alloc_buffer((1,), "float32", scope="local")
                decay = T.alloc_buffer((1,), "float32", scope="local")
                for p in range(head_dim):
                    for n in range(state):
                        s_out[0, h, p, n] = s_in[0, h, p, n]
                    for t in range(length):
                        decay[0] = T.exp(dt[0, t, h] * A[h])
                        acc[0] = T.float32(0)
                        for n in range(state):
                            s_out[0, h, p, n] = s_out[0, h, p, n] * decay[0] + \
                                dt[0, t, h] * x[0, t, h, p] * B[0, t, h // per_group, n]
                            acc[0] = acc[0] + s_out[0, h, p, n] * C[0, t, h // per_group, n]
                        y[0, t, h, p] = acc[0] + D[h] * x[0, t, h, p]

    return kernel
