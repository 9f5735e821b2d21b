"""``edgebit::grouped_attention`` in numpy, written from SPEC.md alone (no edgebit code), in float64: the contract
every implementation is tested against."""

from __future__ import annotations

import numpy as np

TOLERANCE = 1e-5  # max |out - reference| over max |reference|: float32 sums in any order


def grouped_attention(q, prefix_k, prefix_v, new_k, new_v, positions):
    q = np.asarray(q, np.float64)[0]  # [H, T, D]
    keys = np.concatenate([prefix_k, new_k]).astype(np.float64)  # [S, Hkv, D]
    values = np.concatenate([prefix_v, new_v]).astype(np.float64)
    heads, tokens, dim = q.shape
    group = heads // keys.shape[1]
    out = np.zeros((1, tokens, heads * dim))
    for t in range(tokens):
        slots = min(int(positions[t]) + 1, keys.shape[0])
        for h in range(heads):
            score = keys[:slots, h // group] @ q[h, t] / np.sqrt(dim)
            p = np.exp(score - score.max())
            out[0, t, h * dim:(h + 1) * dim] = (p / p.sum()) @ values[:slots, h // group]
    return out


def cases() -> dict[str, tuple]:
    """(q, prefix_k, prefix_v, new_k, new_v, positions) per case: prefill, decode over a prefix, several KV groups,
    an odd head size, a cache longer than a kernel's chunk of slots (kernels may split the slots), a float16 cache,
    query heads per KV head that kernels may take in blocks (4 as in BitNet 2B-4T; 6 = 4 + 2; 3 = 2 + 1)."""
    rng = np.random.default_rng(0)

    def case(heads, kv_heads, dim, prefix, tokens, cache=np.float32):
        q = rng.standard_normal((1, heads, tokens, dim)).astype(np.float32)
        rows = lambda n: rng.standard_normal((n, kv_heads, dim)).astype(cache)
        return q, rows(prefix), rows(prefix), rows(tokens), rows(tokens), np.arange(prefix, prefix + tokens)

    return {"prefill-h4-kv2-d16-t7": case(4, 2, 16, 0, 7), "decode-h8-kv2-d32-p37": case(8, 2, 32, 37, 1),
            "chunk-h6-kv3-d13-p5-t4": case(6, 3, 13, 5, 4), "mha-h2-kv2-d64-p300-t2": case(2, 2, 64, 300, 2),
            "long-h8-kv2-d32-p700-t3": case(8, 2, 32, 700, 3),
            "float16-h8-kv2-d40-p300-t2": case(8, 2, 40, 300, 2, np.float16),
            "float16-prefill-h4-kv1-d16-t5": case(4, 1, 16, 0, 5, np.float16),
            "float16-h20-kv5-d128-p260-t1": case(20, 5, 128, 260, 1, np.float16),
            "float16-h20-kv5-d128-p2100-t1": case(20, 5, 128, 2100, 1, np.float16),
            "h12-kv2-d24-p150-t3": case(12, 2, 24, 150, 3), "h6-kv2-d20-p9-t2": case(6, 2, 20, 9, 2)}


def reference(*args):
    """The operator at its schema: (out,)."""
    return (grouped_attention(*args),)
