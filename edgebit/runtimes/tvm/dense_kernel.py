"""A TensorIR kernel for the one large full-precision matmul of a BitNet model: the output head (tied embedding,
vocab x hidden, 1.3 GB in fp32 at 2B-4T size).

TVM 0.27's default CPU pipeline legalizes ``linear`` into an unscheduled loop nest that reads the weight with a
stride (about 10 s per token at 2B-4T shape). This kernel streams each weight row once: rows in parallel blocks, a
vector accumulator over contiguous 16-float slices of the row and of the activations, a scalar tail, then a
horizontal sum. The token count M is symbolic, so it serves prefill and decode.
"""

from __future__ import annotations

from tvm.script import tirx as T

LANES = 16
ROWS_PER_TASK = 64


def dense_kernel(n: int, k: int, name: str):
    """PrimFunc(x float32 [M, K], w float32 [N, K], out float32 [M, N]): out = x @ w^T."""
    chunks = k // LANES
    tasks = (n + ROWS_PER_TASK - 1) // ROWS_PER_TASK

    @T.prim_func(s_tir=True)
    def kernel(x_handle: T.handle, w: T.Buffer((n, k), "float32"), out_handle: T.handle):
        T.func_attr({"global_symbol": name, "tir.noalias": True})
        m = T.int64()
        x = T.match_buffer(x_handle, (m, k), "float32")
        out = T.match_buffer(out_handle, (m, n), "float32")
        for task in T.parallel(tasks):
            with T.sblock("dense"):
                T.reads(x[0:m, 0:k], w[task * ROWS_PER_TASK:task * ROWS_PER_TASK + ROWS_PER_TASK, 0:k])
                T.writes(out[0:m, task * ROWS_PER_TASK:task * ROWS_PER_TASK + ROWS_PER_TASK])
                acc = T.alloc_buffer((LANES,), "float32", scope="local")
                total = T.alloc_buffer((1,), "float32", scope="local")
                for r in range(ROWS_PER_TASK):
                    for t in range(m):
                        if task * ROWS_PER_TASK + r < n:
                            row = task * ROWS_PER_TASK + r
                            acc[T.ramp(0, 1, LANES)] = T.broadcast(T.float32(0), LANES)
                            for c in range(chunks):
                                acc[T.ramp(0, 1, LANES)] = acc[T.ramp(0, 1, LANES)] + \
                                    x[t, T.ramp(c * LANES, 1, LANES)] * w[row, T.ramp(c * LANES, 1, LANES)]
                            total[0] = T.float32(0)
                            for lane in range(LANES):
                                total[0] = total[0] + acc[lane]
                            for i in range(chunks * LANES, k):
                                total[0] = total[0] + x[t, i] * w[row, i]
                            out[t, row] = total[0]

    return kernel
