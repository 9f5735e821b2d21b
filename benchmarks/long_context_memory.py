"""Peak resident memory of the device runner at the model's full context: the BitNet 2B-4T shape (random ternary
weights, export's defaults: int8 head, fp16 KV cache) built with ``--max-seq-len 4096`` for this host, a prompt of
``--prompt`` tokens and generation up to the context's end (or ``--new-tokens``), run by each runtime's own runner
program (what a bundle ships), which reports its peak RSS (getrusage) beside its prefill and decode timings.

    .venv/bin/python benchmarks/long_context_memory.py [--runtimes tvm onnx-custom] [--prompt 3968] [--threads 2]

What fills the memory: the packed weights and the int8 head (the same bytes a decode step reads), the KV cache
(``layers x 2 x max_seq_len x kv_heads x head_dim`` at its precision), the runtime's own buffers. The runner
prefills in chunks (runtimes/runner_driver.h ``kPrefillChunk``), so a long prompt does not hold [T, vocab] logits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ternary_gemv import random_ternary_model  # noqa: E402


def build_runtime(model, name: str, max_seq_len: int, directory: Path) -> Path:
    """The runtime directory a bundle would hold for the host (x86_64), laid out as on a device."""
    from edgebit import runtimes
    from edgebit.targets import resolve_target

    (directory / "scratch").mkdir()
    files = runtimes.runtime(name).build(model, resolve_target("x86_64"), max_seq_len, directory / "scratch")
    root = directory / name
    for relative, source in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, root / relative)
    shutil.rmtree(directory / "scratch")
    return root


def run_generate(root: Path, prompt: int, new_tokens: int, threads: int, vocab: int) -> dict:
    ids = root.parent / "prompt.npy"
    np.save(ids, np.random.default_rng(0).integers(0, vocab, (1, prompt), dtype=np.int64))
    env = {**os.environ, "LD_LIBRARY_PATH": str(root / "lib"), "EDGEBIT_NUM_THREADS": str(threads),
           "TVM_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([str(root / "bin/edgebit-runner"), str(root), "generate", str(ids), str(new_tokens),
                          str(root.parent / "out.npy")], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{root.name}: the runner failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from edgebit.models import summarize
    from edgebit.models.head import set_head_precision
    from edgebit.models.kv_cache import set_kv_cache_precision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--max-seq-len", type=int, default=4096)
    parser.add_argument("--prompt", type=int, default=3968)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtimes", nargs="+", default=["tvm"])
    parser.add_argument("--kv-cache", default="fp16", choices=["fp16", "fp32"])
    parser.add_argument("--new-tokens", type=int, help="tokens to generate (default: to the context's end); a "
                        "runtime whose memory is planned when it loads (ExecuTorch) peaks at its first step")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model = set_kv_cache_precision(set_head_precision(random_ternary_model(args.layers), "int8"), args.kv_cache)
    c = model.config
    info = summarize(model)
    kv_bytes = (c.num_hidden_layers * 2 * args.max_seq_len * c.num_key_value_heads * c.head_dim
                * (2 if args.kv_cache == "fp16" else 4))
    new_tokens = args.new_tokens or args.max_seq_len - args.prompt
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.runtimes:
            root = build_runtime(model, name, args.max_seq_len, Path(tmp))
            size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
            result = run_generate(root, args.prompt, new_tokens, args.threads, c.vocab_size)
            rows.append({"runtime": name, "max_seq_len": args.max_seq_len, "kv_cache": args.kv_cache,
                         "prompt": args.prompt, "generated": result["decode_tokens"] + 1, "threads": args.threads,
                         "peak_rss_bytes": result["peak_rss_bytes"], "runtime_dir_bytes": size,
                         "kv_cache_bytes": kv_bytes, "packed_weight_bytes": info["packed_bytes"],
                         "prefill_tokens_per_s": args.prompt / result["prefill_seconds"],
                         "decode_tokens_per_s": result["decode_tokens"] / max(result["decode_seconds"], 1e-9)})
            shutil.rmtree(root)
    if args.json:
        print(json.dumps({"load_average": os.getloadavg()[0], "results": rows}))
        return
    print(f"BitNet 2B-4T shape, {args.layers} layers, int8 head, {args.kv_cache} KV cache of {kv_bytes / 1e6:.0f} MB, "
          f"max_seq_len {args.max_seq_len}, prompt {args.prompt} + {new_tokens} generated, {args.threads} thread(s); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'runtime':>12} {'peak RSS':>10} {'runtime dir':>12} {'prefill t/s':>12} {'decode t/s':>11}")
    for r in rows:
        print(f"{r['runtime']:>12} {r['peak_rss_bytes'] / 1e9:9.3f}G {r['runtime_dir_bytes'] / 1e9:11.3f}G "
              f"{r['prefill_tokens_per_s']:12.1f} {r['decode_tokens_per_s']:11.2f}")


if __name__ == "__main__":
    main()
