"""Where one decode step's time and bytes go: the BitNet 2B-4T shape (random ternary weights, --head int8 by default) compiled
through edgebit's TVM path for this host, one token decoded at a given depth, each kernel the Relax VM calls timed.

    .venv/bin/python benchmarks/decode_breakdown.py [--layers 30] [--depth 128 2048] [--threads 1]

Kernels are grouped as the issue tracker asks: ternary GEMV, output head, attention, norms / activation
quantization / RoPE and other elementwise kernels, embedding; "runtime between kernels" is the step's wall time
(median, uninstrumented) minus the kernels' time: the VM's shape checks, allocations and calls. Each group's bytes
read per token (packed weights, the head's table, the KV rows up to the depth) give its GB/s, beside the machine's
read bandwidth measured in the same run (peers.py's probe).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ternary_gemv import head_bytes, random_ternary_model  # noqa: E402

GROUPS = [("ternary GEMV", ("ternary_linear",)), ("output head", ("int8_linear", "q4_linear", "dense_")),
          ("attention", ("grouped_attention", "matmul", "softmax", "concatenate")), ("embedding", ("take",))]
ELEMENTWISE = "norms, act. quantization, RoPE, elementwise"


def group_of(symbol: str) -> str | None:
    """The breakdown row of a VM call; None for the VM's own builtins (counted in "runtime between kernels")."""
    if symbol.startswith("vm.builtin.") or symbol.startswith("vm."):
        return None
    for name, prefixes in GROUPS:
        if symbol.startswith(prefixes):
            return name
    return ELEMENTWISE


def worker(work: Path, depth: int, repeats: int, tokens: int = 1) -> dict:
    """In a fresh process (TVM sizes its thread pool once): the step's median time and each group's kernel time."""
    import numpy as np
    import tvm
    from tvm import relax

    info = json.loads((work / "info.json").read_text())
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(work / "model.so")), tvm.cpu())
    loaded = tvm.runtime.load_param_dict_from_file(str(work / "weights.params"))
    weights = [loaded[name] for name in sorted(loaded.keys())]
    rng = np.random.default_rng(0)
    caches = [tvm.runtime.tensor(rng.standard_normal((depth, *shape[1:])).astype(info["cache_dtype"]))
              for shape in info["state_shapes"]]
    inputs = [tvm.runtime.tensor(np.ones((1, tokens), np.int64)), tvm.runtime.tensor(np.array([depth], np.int64)),
              tvm.runtime.tensor(np.array([tokens - 1], np.int64))]  # logit_rows: the last token's, as generate

    def step():
        vm["main"](*inputs, *caches, *weights)

    samples = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        step()
        samples.append(time.perf_counter() - start)
    total = statistics.median(samples[1:])
    started = {}
    spent = collections.defaultdict(float)
    by_symbol = collections.defaultdict(float)
    calls = collections.Counter()

    def instrument(func, symbol, before, result, *args):
        if before:
            started[symbol] = time.perf_counter()
        else:
            seconds = time.perf_counter() - started[symbol]
            spent[group_of(symbol)] += seconds
            by_symbol[symbol] += seconds
            calls[symbol] += 1
        return 0

    vm.set_instrument(instrument)
    per_repeat = []
    for _ in range(repeats):
        spent.clear()
        step()
        per_repeat.append(dict(spent))
    kernels = {name: statistics.median(r.get(name, 0.0) for r in per_repeat)
               for name in {n for r in per_repeat for n in r} if name is not None}
    symbols = {name: {"s": seconds / repeats, "calls": calls[name] // repeats} for name, seconds in by_symbol.items()}
    return {"step_s": total, "kernels_s": kernels, "symbols": symbols}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--depth", type=int, nargs="+", default=[128, 2048])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--head", default="int8", choices=["int8", "q4", "fp32"], help="export --head")
    parser.add_argument("--kv-cache", default="fp16", choices=["fp16", "fp32"], help="export --kv-cache")
    parser.add_argument("--tokens", type=int, default=1, help="tokens per step: 1 is decode, more a prefill chunk")
    parser.add_argument("--symbols", type=int, default=0, help="also list the N costliest kernels, each on its own")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.depth[0], args.repeats, args.tokens)))
        return 0
    from edgebit.models import summarize
    from edgebit.models.head import set_head_precision
    from edgebit.models.kv_cache import set_kv_cache_precision
    from edgebit.runtimes.tvm.backend import compile_model
    from edgebit.toolchain.host_cpu import native_host_target
    from peers import read_bandwidth

    model = set_kv_cache_precision(set_head_precision(random_ternary_model(args.layers), args.head), args.kv_cache)
    c = model.config
    ternary_bytes = summarize(model)["packed_bytes"]["ternary"]
    table_bytes = head_bytes(model)
    kv_bytes_per_position = c.num_hidden_layers * 2 * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * (
        2 if args.kv_cache == "fp16" else 4)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        compiled = compile_model(model, native_host_target(), max(args.depth) + args.tokens + 8, work)
        (work / "info.json").write_text(json.dumps({"state_shapes": compiled.graph.state_shapes,
                                                    "cache_dtype": compiled.graph.dtype(0)}))
        del model
        for threads in args.threads:
            bandwidth = read_bandwidth(threads)
            for depth in args.depth:
                env = {**os.environ, "TVM_NUM_THREADS": str(threads)}
                out = subprocess.run([sys.executable, __file__, "--worker", str(work), "--depth", str(depth),
                                      "--repeats", str(args.repeats), "--tokens", str(args.tokens)],
                                     capture_output=True, text=True, env=env,
                                     check=True).stdout
                measured = json.loads(out.strip().splitlines()[-1])
                rows.append({"threads": threads, "depth": depth, "read_bandwidth_GB_per_s": bandwidth,
                             "bytes": {"ternary GEMV": ternary_bytes, "output head": table_bytes,
                                       "attention": kv_bytes_per_position * depth}, **measured})
    if args.json:
        print(json.dumps({"layers": args.layers, "load_average": os.getloadavg()[0], "rows": rows}, indent=2))
        return 0
    print(f"BitNet 2B-4T shape, {args.layers} layers, {args.head} head, random ternary weights; load average "
          f"{os.getloadavg()[0]:.1f}; medians of {args.repeats}")
    for row in rows:
        step_ms = row["step_s"] * 1e3
        kernels = row["kernels_s"]
        between = row["step_s"] - sum(kernels.values())
        read = sum(row["bytes"].values())
        print(f"\n{row['threads']} thread(s), depth {row['depth']}, {args.tokens} token(s): {step_ms:.1f} ms per step "
              f"({args.tokens * 1e3 / step_ms:.1f} tok/s), {read / 1e9:.2f} GB read = {read / row['step_s'] / 1e9:.1f} GB/s of "
              f"{row['read_bandwidth_GB_per_s']:.1f} GB/s measured")
        print(f"  {'':<46}{'ms':>8}{'share':>8}{'MB read':>9}{'GB/s':>7}")
        for name in [g for g, _ in GROUPS] + [ELEMENTWISE]:
            seconds = kernels.get(name, 0.0)
            size = row["bytes"].get(name)
            rate = f"{size / seconds / 1e9:>7.1f}" if size and seconds else f"{'':>7}"
            print(f"  {name:<46}{seconds * 1e3:>8.2f}{seconds / row['step_s']:>8.0%}"
                  f"{(f'{size / 1e6:.0f}' if size else ''):>9}{rate}")
        print(f"  {'runtime between kernels (VM calls, allocation)':<46}{between * 1e3:>8.2f}{between / row['step_s']:>8.0%}")
        costliest = sorted(row["symbols"].items(), key=lambda item: -item[1]["s"])[:args.symbols]
        for symbol, measured in costliest:
            print(f"    {symbol[:60]:<60}{measured['s'] * 1e3:>8.2f} ms in {measured['calls']} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
