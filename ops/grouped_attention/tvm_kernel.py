"""TVM 0.27 entry of ``edgebit::grouped_attention`` (see SPEC.md): a TensorIR function that calls the C++ kernel
(``kernel.h`` through ``tvm_adapter.cc``, linked into the model library by
:mod:`edgebit.runtimes.tvm.extern_kernels`). The token count T and the prefix length P are symbolic, so one kernel
serves prefill and decode at any depth, and the prefix is read where the runner keeps it."""

from __future__ import annotations

from tvm.script import tirx as T

EXTERN_SYMBOLS = {"float32": "edgebit_grouped_attention", "float16": "edgebit_grouped_attention_f16"}  # by cache dtype
EXTERN_SOURCE = "grouped_attention/tvm_adapter.cc"


def grouped_attention_kernel(heads: int, kv_heads: int, dim: int, cache_dtype: str, name: str):
    """PrimFunc(q [1, H, T, D], prefix_k, prefix_v [P, Hkv, D], new_k, new_v [T, Hkv, D], positions int64 [T],
    out [1, T, H * D]), the cache tensors in ``cache_dtype`` (float32 or float16)."""
    symbol = EXTERN_SYMBOLS[cache_dtype]

    @T.prim_func(s_tir=True)
    def kernel(q_handle: T.handle, pk_handle: T.handle, pv_handle: T.handle, nk_handle: T.handle,
               nv_handle: T.handle, pos_handle: T.handle, out_handle: T.handle):
        T.func_attr({"global_symbol": name, "tir.noalias": True})
        t = T.int64()
        p = T.int64()
        q = T.match_buffer(q_handle, (1, heads, t, dim), "float32")
        prefix_k = T.match_buffer(pk_handle, (p, kv_heads, dim), cache_dtype)
        prefix_v = T.match_buffer(pv_handle, (p, kv_heads, dim), cache_dtype)
        new_k = T.match_buffer(nk_handle, (t, kv_heads, dim), cache_dtype)
        new_v = T.match_buffer(nv_handle, (t, kv_heads, dim), cache_dtype)
        positions = T.match_buffer(pos_handle, (t,), "int64")
        out = T.match_buffer(out_handle, (1, t, heads * dim), "float32")
        T.evaluate(T.call_extern("int32", symbol, q.data, prefix_k.data, prefix_v.data, new_k.data,
                                 new_v.data, positions.data, out.data, T.int64(heads), T.int64(kv_heads), t, p,
                                 T.int64(dim)))

    return kernel
