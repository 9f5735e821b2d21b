"""Ternary GEMV and BitNet-2B-4T-shaped decode/prefill throughput on this host, side by side in one run.

    .venv/bin/python benchmarks/ternary_gemv.py [--layers 30] [--skip-model]

Part 1 (1 thread): y = W x at BitNet b1.58 2B-4T's projection shapes for
  * edgebit's TVM kernels (the portable tensor-expression one, the AVX2 pmaddubsw micro-kernel that x86_64 bundles
    use, and the AVX-512 VNNI micro-kernel of x86_64-avx512 bundles when the CPU has it), activation quantization
    included,
  * torch fp32 F.linear (dequantized weights),
  * an int8 baseline: torch's dynamically quantized Linear (FBGEMM int8 weights, per-token int8 activations).
Part 2: a 2B-4T-shaped model (hidden 2560, FFN 6912, 20/5 heads, vocab 128256) with random ternary weights, compiled
through edgebit's TVM path for this host with each ``--head`` precision (int8, export's default, and fp32); decode
and prefill tokens/s at 1 and 2 threads (each in a fresh process,
since TVM sizes its thread pool once), with the bytes of weights read per token and the resulting GB/s.
Timings are medians of repeated runs (the machine is shared and noisy); compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from timing import median_seconds

from edgebit.export import HEAD_PRECISIONS

warnings.filterwarnings("ignore")  # torch.ao's deprecation notice for the int8 baseline

SHAPES = [(2560, 2560), (6912, 2560), (2560, 6912)]  # (out_features, in_features): qkvo, gate/up, down
BITNET_2B = dict(vocab_size=128256, hidden_size=2560, intermediate_size=6912, num_hidden_layers=30,
                 num_attention_heads=20, num_key_value_heads=5, hidden_act="relu2", rope_theta=500000.0,
                 tie_word_embeddings=True)


def gemv_table() -> list[dict]:
    import torch
    import torch.nn.functional as F
    import tvm

    from edgebit.toolchain.host_cpu import host_tvm_cpu
    from edgebit.quant.packing import pack_planar
    from edgebit_ops.ternary_matmul.tvm_kernel import dot_product_kernel, ternary_linear_te

    torch.set_num_threads(1)
    mcpu, features = host_tvm_cpu()
    rows = []
    for out_f, in_f in SHAPES:
        gen = torch.Generator().manual_seed(out_f + in_f)
        ternary = torch.randint(-1, 2, (out_f, in_f), generator=gen, dtype=torch.int8)
        packed, scale = pack_planar(ternary), torch.tensor([0.02])
        x = torch.randn(1, in_f, generator=gen)
        out = torch.empty(1, out_f)
        kernels = {}
        te_x = tvm.te.placeholder((1, in_f), "float32", name="x")
        te_w = tvm.te.placeholder(tuple(packed.shape), "uint8", name="w")
        te_s = tvm.te.placeholder((1,), "float32", name="s")
        te_func = tvm.te.create_prim_func([te_x, te_w, te_s, ternary_linear_te(te_x, te_w, te_s, in_f)])
        avx2 = tvm.target.Target({"kind": "llvm", "mcpu": "haswell"})
        kernels["edgebit portable (TE, AVX2)"] = tvm.tirx.build(te_func.with_attr("global_symbol", "k"),
                                                                target=avx2)["k"]
        kernels["edgebit AVX2 pmaddubsw"] = tvm.tirx.build(
            dot_product_kernel(out_f, in_f, packed.shape[1], "avx2", "k"), target=avx2)["k"]
        if "avx512vnni" in features:
            fn = dot_product_kernel(out_f, in_f, packed.shape[1], "avx512vnni", "k")
            kernels["edgebit AVX-512 VNNI"] = tvm.tirx.build(fn, target=tvm.target.Target({"kind": "llvm", "mcpu": mcpu}))["k"]
        reference = (x @ ternary.float().T)
        dense = ternary.float() * scale
        int8_linear = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(in_f, out_f,
                                                             bias=False)), {torch.nn.Linear}, dtype=torch.qint8)
        with torch.no_grad():
            int8_linear[0].weight  # noqa: B018 (packed at quantization)
        timings = {"torch fp32 F.linear": median_seconds(lambda: F.linear(x, dense), 50),
                   "torch int8 dynamic (FBGEMM)": median_seconds(lambda: int8_linear(x), 50)}
        for name, kernel in kernels.items():
            kernel(x, packed, scale, out)
            error = (out / scale - reference).abs().max().item() / reference.abs().max().item()
            assert error < 2e-2, f"{name} disagrees with the reference ({error})"  # int8 activation rounding
            timings[name] = median_seconds(lambda k=kernel: k(x, packed, scale, out), 100)
        fp32 = timings["torch fp32 F.linear"]
        weight_bytes = {"torch fp32 F.linear": 4 * out_f * in_f, "torch int8 dynamic (FBGEMM)": out_f * in_f}
        for name, seconds in timings.items():
            rows.append({"shape": f"{out_f}x{in_f}", "kernel": name, "us": seconds * 1e6,
                         "speedup_vs_fp32": fp32 / seconds,
                         "weight_MB": weight_bytes.get(name, packed.numel()) / 1e6})
    return rows


def random_ternary_model(layers: int, seed: int = 0):
    """A 2B-4T-shaped edgebit model with random ternary weights, built without 8 GB of latent fp32 weights."""
    import torch

    from edgebit.models.bitnet.model import BitNetConfig, BitNetForCausalLM
    from edgebit.quant.packing import pack_planar

    config = BitNetConfig(**{**BITNET_2B, "num_hidden_layers": layers})
    with torch.device("meta"):
        model = BitNetForCausalLM(config)
    ternary = model.ternary_layers()
    for layer in ternary.values():
        layer.weight = None
    model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    for layer in ternary.values():
        codes = torch.randint(-1, 2, (layer.out_features, layer.in_features), generator=gen, dtype=torch.int8)
        layer.set_packed(pack_planar(codes), torch.tensor([0.02]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.02 if "embed" in name else torch.ones(param.shape))
    return model.eval()


def model_worker(library_dir: Path, threads: int, prompt: int, decode_steps: int, depth: int = 0) -> dict:
    """Runs in a fresh process with TVM_NUM_THREADS set: times prefill and decode of the compiled model."""
    import numpy as np
    import tvm

    from edgebit.runtimes.tvm.backend import load_for_host

    conf = json.loads((library_dir / "info.json").read_text())
    step = load_for_host(library_dir / "model.so", library_dir / "weights.params", takes_position=True)
    ids = np.random.default_rng(0).integers(0, 128256, (1, prompt), dtype=np.int64)
    rows = conf["state_shapes"][0][1:]  # the KV caches the runner keeps: [max_seq_len, kv_heads, head_dim] each
    caches = [np.zeros((conf["max_seq_len"], *rows), conf["cache_dtype"]) for _ in conf["state_shapes"]]

    # At a depth the cache is taken as filled up to it (a step costs the same whatever the rows hold): the prompt is
    # prefilled after `depth` cached tokens (llama-bench's -d), then decoded from there. The prefixes are made outside
    # the timing, as the device runner's views of its buffers cost nothing.
    prefixes = [tvm.runtime.tensor(c[:depth]) for c in caches]

    def prefill():
        return step(ids, depth, *prefixes, last_only=True)  # as generate prefills: the last token's logits

    # Python's cyclic collector off while timing: the device runner is C++, and a collection inside a step (2-3 % of
    # a decode step's time here, in perf) is this harness's cost, not the engine's
    gc.collect()
    gc.disable()
    prefill_s = median_seconds(prefill, 3, warmup=1)
    token = np.array([[1]], dtype=np.int64)
    start_position = depth + prompt
    samples = []
    for i in range(decode_steps):
        prefixes = [tvm.runtime.tensor(c[:start_position + i]) for c in caches]
        start = time.perf_counter()
        step(token, start_position + i, *prefixes)
        samples.append(time.perf_counter() - start)
    gc.enable()
    decode_s = statistics.median(samples[1:])
    return {"threads": threads, "depth": depth, "prefill_tokens_per_s": prompt / prefill_s,
            "decode_tokens_per_s": 1 / decode_s,
            "bytes_per_token": conf["bytes_per_token"], "decode_GB_per_s": conf["bytes_per_token"] / decode_s / 1e9}


def head_bytes(model) -> int:
    """Bytes of the output head (or the tied embedding serving as one) one decode step reads, at the model's head
    precision; any family."""
    from edgebit.models.head import head_modules

    embedding, head = head_modules(model)
    table = getattr(model, head or embedding)
    return sum(t.numel() * t.element_size() for t in (
        [table.w_codes, table.w_scale] if hasattr(table, "w_codes") else [table.weight]))


@dataclass
class CompiledModel:
    """A 2B-4T-shaped model compiled for this host in a scratch directory; ``time`` runs a worker on it."""
    work: Path
    layers: int
    head: str
    kv_cache: str
    mcpu: str
    compile_seconds: float
    bytes_per_token: int  # packed ternary weights and the head at its precision (not the KV cache)

    def time(self, threads: int, prompt: int, decode_steps: int, depth: int = 0) -> dict:
        """Prefill and decode tokens/s at ``threads`` in a fresh process (TVM sizes its thread pool once)."""
        env = {**os.environ, "TVM_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run([sys.executable, __file__, "--worker", str(self.work), "--threads", str(threads),
                              "--prompt", str(prompt), "--decode-steps", str(decode_steps), "--depth", str(depth)],
                             capture_output=True, text=True, env=env, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        row.update(layers=self.layers, mcpu=self.mcpu, compile_seconds=self.compile_seconds, head=self.head,
                   kv_cache=self.kv_cache)
        return row


@contextlib.contextmanager
def compiled_model(layers: int, max_seq_len: int, head: str = "int8", kv_cache: str = "fp16"):
    """Compiles the random-weight 2B-4T shape through edgebit's TVM path; the directory goes when the block ends."""
    from edgebit.models.head import set_head_precision
    from edgebit.models.kv_cache import set_kv_cache_precision
    from edgebit.runtimes.tvm.backend import compile_model
    from edgebit.toolchain.host_cpu import host_tvm_cpu, native_host_target
    from edgebit.models import summarize

    mcpu, features = host_tvm_cpu()
    model = random_ternary_model(layers)
    info = summarize(model)
    set_head_precision(model, head)
    set_kv_cache_precision(model, kv_cache)
    # What one decode step reads: every packed ternary weight and the output head (tied embedding) at its precision.
    bytes_per_token = info["packed_bytes"]["ternary"] + head_bytes(model)
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        compiled = compile_model(model, native_host_target(), max_seq_len=max_seq_len, out_dir=Path(work))
        compile_s = time.perf_counter() - start
        del model
        (Path(work) / "info.json").write_text(json.dumps({"state_shapes": compiled.graph.state_shapes,
                                                           "max_seq_len": compiled.graph.max_seq_len,
                                                           "cache_dtype": compiled.graph.dtype(0),
                                                           "bytes_per_token": bytes_per_token}))
        yield CompiledModel(Path(work), layers, head, kv_cache, mcpu, compile_s, bytes_per_token)


def model_table(layers: int, prompt: int, decode_steps: int, head: str = "int8", depths: tuple[int, ...] = (0,),
                threads_list: tuple[int, ...] = (1, 2), kv_cache: str = "fp16") -> list[dict]:
    """Prefill and decode of the compiled 2B-4T shape at every depth and thread count, one worker each."""
    with compiled_model(layers, max(depths) + prompt + decode_steps + 8, head, kv_cache) as model:
        return [model.time(threads, prompt, decode_steps, depth) for depth in depths for threads in threads_list]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--decode-steps", type=int, default=16)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--head", nargs="+", default=["int8", "fp32"], choices=list(HEAD_PRECISIONS),
                        help="output head precisions to compile the model with (export's --head)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(model_worker(args.worker, args.threads, args.prompt, args.decode_steps, args.depth)))
        return
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    gemv = gemv_table()
    print("Ternary GEMV, 1 thread (median):")
    print(f"  {'shape':<10} {'kernel':<30} {'us':>9} {'vs fp32':>8} {'weights MB':>11}")
    for r in gemv:
        print(f"  {r['shape']:<10} {r['kernel']:<30} {r['us']:9.1f} {r['speedup_vs_fp32']:7.2f}x {r['weight_MB']:11.2f}")
    results = {"gemv": gemv}
    if not args.skip_model:
        model = [row for head in args.head for row in model_table(args.layers, args.prompt, args.decode_steps, head)]
        results["model"] = model
        print(f"\nBitNet 2B-4T shape, {args.layers} layers, random ternary weights, TVM mcpu={model[0]['mcpu']} "
              f"(compiled in {model[0]['compile_seconds']:.0f} s):")
        print(f"  {'head':>5} {'threads':>7} {'decode tok/s':>13} {'prefill tok/s':>14} {'GB/token':>9} "
              f"{'decode GB/s':>12}")
        for r in model:
            print(f"  {r['head']:>5} {r['threads']:>7} {r['decode_tokens_per_s']:13.2f} "
                  f"{r['prefill_tokens_per_s']:14.2f} {r['bytes_per_token'] / 1e9:9.3f} {r['decode_GB_per_s']:12.2f}")
        print("  (reference on this machine class, bitnet.cpp: decode ~16 / ~22 tok/s, prefill ~51 / ~97 tok/s at "
              "1 / 2 threads, ~1.18 GB read per token)")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
