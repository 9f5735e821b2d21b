"""Decode cost against the KV cache's size: the same BitNet 2B-4T-shaped model (trimmed to a few layers, random
ternary weights) compiled through edgebit's TVM path with different ``--max-seq-len``, one decode step timed at
the same positions. The runner owns the cache and the step reads only the filled rows
(edgebit.models.bitnet.step.AppendCacheStep), so the time follows the position, not the cache size.

    .venv/bin/python benchmarks/kv_cache_cost.py [--layers 4] [--max-seq-len 128 1024 4096] [--positions 64 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ternary_gemv import random_ternary_model  # noqa: E402


def decode_ms(step, caches, position: int, repeats: int) -> float:
    import numpy as np
    import tvm

    prefixes = [tvm.runtime.tensor(c[:position]) for c in caches]
    token = np.array([[1]], dtype=np.int64)
    samples = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        step(token, position, *prefixes)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[1:]) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, nargs="+", default=[128, 1024, 4096])
    parser.add_argument("--positions", type=int, nargs="+", default=[64, 120])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--kv-cache", default="fp16", choices=["fp16", "fp32"], help="export --kv-cache")
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    import numpy as np

    from edgebit.models.head import set_head_precision
    from edgebit.models.kv_cache import set_kv_cache_precision
    from edgebit.runtimes.tvm.backend import compile_model, load_for_host
    from edgebit.toolchain.host_cpu import host_tvm_cpu, native_host_target

    mcpu, features = host_tvm_cpu()
    target = native_host_target()
    model = set_kv_cache_precision(set_head_precision(random_ternary_model(args.layers), "int8"), args.kv_cache)
    print(f"BitNet 2B-4T shape, {args.layers} layers, int8 head, {args.kv_cache} KV cache, TVM mcpu={mcpu}, "
          f"{os.environ['TVM_NUM_THREADS']} thread(s); load average {os.getloadavg()[0]:.1f}; median of {args.repeats}")
    print(f"{'max_seq_len':>12}" + "".join(f"{f'ms @ pos {p}':>14}" for p in args.positions))
    for max_seq_len in args.max_seq_len:
        with tempfile.TemporaryDirectory() as work:
            compiled = compile_model(model, target, max_seq_len, Path(work))
            step = load_for_host(compiled.library, compiled.weights, compiled.takes_position)
            caches = [np.zeros(shape, compiled.graph.dtype(i)) for i, shape in enumerate(compiled.graph.state_shapes)]
            times = [decode_ms(step, caches, p, args.repeats) if p < max_seq_len else float("nan")
                     for p in args.positions]
        print(f"{max_seq_len:>12}" + "".join(f"{t:>14.1f}" for t in times))


if __name__ == "__main__":
    main()
