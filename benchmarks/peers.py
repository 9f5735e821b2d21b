"""edgebit beside llama.cpp and ik_llama.cpp in one run: the BitNet b1.58 2B-4T shape with the same random ternary
weights, prefill and decode tokens/s at 1 and 2 threads, bytes read per token and the share of the memory bandwidth
measured in the same run. Opt-in (`make bench-peers`), never in CI: the peers build from source on first use.

    .venv/bin/python benchmarks/peers.py [--layers 30] [--prompt 128] [--gen 32] [--threads 1 2] [--depth 0]
                                         [--engines edgebit llama.cpp ik_llama.cpp] [--rounds 3] [--json]

Every engine runs once per round at every thread count and depth, the rounds interleaved, and each single run sits
between two samples of the read bandwidth at its thread count: the tables give each engine's medians over the rounds,
and its bandwidth share is the median of each round's decode GB/s over the bandwidth sampled around that run.

Peers (cached under $EDGEBIT_CACHE/peers, keyed by source hash and this CPU's flags):
  * llama.cpp from the `llama-cpp-python` sdist on PyPI (its vendored tree): `llama-bench`, CPU only, -march=native;
    weights TQ2_0 (2.06 bits), arch `bitnet`, written with the `gguf` package;
  * ik_llama.cpp from the `ik-llama-cpp-python` sdist: `llama-bench` + `llama-quantize`; an F16 `bitnet-25` file
    requantized to IQ2_BN (2 bits) with an F16 token embedding.
Both keep the tied head / embedding in F16 (2 bytes per weight); edgebit's is `--head` (int8 by default, as export's),
and every row says which.
The recorded bitnet.cpp figures of ../shared/NOTES.md stay a note until bitnet.cpp can be built from a registry.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ternary_gemv import BITNET_2B, compiled_model, random_ternary_model  # noqa: E402

from edgebit.export import HEAD_PRECISIONS  # noqa: E402

SDISTS = {"llama.cpp": ("llama-cpp-python", "0.3.36", "vendor/llama.cpp"),
          "ik_llama.cpp": ("ik-llama-cpp-python", "0.1.5", "vendor/ik_llama.cpp")}
CMAKE_FLAGS = ["-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF",
               "-DGGML_OPENMP=ON"]


def cache_root() -> Path:
    from edgebit.toolchain import provision

    return provision.cache_dir() / "peers"


def cpu_key() -> str:
    """This CPU's feature flags: a peer built with -march=native runs only where they match."""
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    return hashlib.sha256(flags.encode()).hexdigest()[:8]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- building the peers ----
def _sdist(package: str, version: str, work: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d",
                    str(work), f"{package}=={version}"], check=True)
    return next(work.glob("*.tar.gz"))


def _build_info_stand_in(source: Path) -> None:
    """ik_llama.cpp's sdist lacks common/cmake/build-info-gen-cpp.cmake; a stand-in fills build-info.cpp."""
    script = source / "common" / "cmake" / "build-info-gen-cpp.cmake"
    if script.exists():
        return
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text('set(BUILD_NUMBER 0)\nset(BUILD_COMMIT "sdist")\nset(BUILD_COMPILER "gcc")\n'
                      'set(BUILD_TARGET "native")\n'
                      'configure_file(common/build-info.cpp.in common/build-info.cpp)\n')


# Cross-building for an arm64 board (benchmarks/qemu_instructions.py counts its instructions under qemu): static, no
# OpenMP (one thread), the ARMv8.2 dot-product kernels as on a Raspberry Pi 5 or a phone.
ARM64_FLAGS = ["-DCMAKE_SYSTEM_NAME=Linux", "-DCMAKE_SYSTEM_PROCESSOR=aarch64",
               "-DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc", "-DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++",
               "-DGGML_NATIVE=OFF", "-DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod", "-DGGML_OPENMP=OFF",
               "-DCMAKE_EXE_LINKER_FLAGS=-static"]


def build_peer(engine: str, arm64: bool = False) -> Path:
    """The directory holding `llama-bench` (and `llama-quantize` for ik_llama.cpp), built once: for this CPU, or
    cross-built for arm64 (``arm64``)."""
    package, version, vendored = SDISTS[engine]
    final = cache_root() / f"{engine}-{version}-{'arm64-dotprod' if arm64 else cpu_key()}"
    if (final / "llama-bench").exists():
        return final
    with tempfile.TemporaryDirectory(dir=cache_root().parent) as tmp:
        work = Path(tmp)
        sdist = _sdist(package, version, work)
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        source = next(work.glob(f"*/{vendored}"))
        targets = ["llama-bench"] + (["llama-quantize"] if engine == "ik_llama.cpp" else [])
        flags = CMAKE_FLAGS + (["-DLLAMA_BUILD_EXAMPLES=ON"] if engine == "ik_llama.cpp" else
                               ["-DLLAMA_BUILD_EXAMPLES=OFF"]) + (ARM64_FLAGS if arm64 else [])
        if engine == "ik_llama.cpp":
            _build_info_stand_in(source)
        log(f"building {engine} {version} {'for arm64 ' if arm64 else ''}from its PyPI sdist (minutes; once)")
        subprocess.run(["nice", "cmake", "-S", str(source), "-B", str(work / "build"), *flags], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["nice", "cmake", "--build", str(work / "build"), "--target", *targets, "-j",
                        str(os.cpu_count() or 2)], check=True, stdout=subprocess.DEVNULL)
        staging = final.with_name(final.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for target in targets:
            built = next(p for p in (work / "build").rglob(target) if p.is_file() and os.access(p, os.X_OK))
            shutil.copy2(built, staging / target)
        os.replace(staging, final)
    return final


# ---- the same weights as GGUF files ----
def dense_ternary(layer) -> np.ndarray:
    """float32 [out, in] = codes * scale of an edgebit packed ternary layer."""
    from edgebit.quant.packing import unpack_planar

    codes = unpack_planar(layer.w_packed, layer.in_features).numpy().astype(np.float32)
    return codes * float(layer.w_scale.reshape(-1)[0])


GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down"}


def write_gguf(model, path: Path, arch: str, ternary_type) -> None:
    """The model as a GGUF of ``arch`` with ternary projections in ``ternary_type`` (F16 embedding, F32 norms)."""
    import gguf

    c = model.config
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(4096)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_rope_freq_base(c.rope_theta)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if ternary_type == gguf.GGMLQuantizationType.F16
                         else gguf.LlamaFileType.MOSTLY_TQ2_0)
    # A placeholder SentencePiece vocabulary of the model's size: with tokenizer model "none" llama.cpp sizes the
    # embedding from an empty vocabulary and refuses the file. llama-bench never tokenizes text.
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"<t{i}>" for i in range(c.vocab_size)])
    writer.add_token_scores([0.0] * c.vocab_size)
    writer.add_token_types([gguf.TokenType.NORMAL] * c.vocab_size)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_tensor("token_embd.weight", model.embed_tokens.weight.detach().numpy().astype(np.float16))
    writer.add_tensor("output_norm.weight", model.norm.weight.detach().numpy().astype(np.float32))
    for i, layer in enumerate(model.layers):
        norms = {"attn_norm": layer.input_layernorm, "ffn_norm": layer.post_attention_layernorm,
                 "attn_sub_norm": layer.self_attn.attn_sub_norm, "ffn_sub_norm": layer.mlp.ffn_sub_norm}
        for name, norm in norms.items():
            writer.add_tensor(f"blk.{i}.{name}.weight", norm.weight.detach().numpy().astype(np.float32))
        for ours, theirs in GGUF_NAMES.items():
            dense = dense_ternary(layer.get_submodule(ours))
            if ternary_type == gguf.GGMLQuantizationType.F16:
                writer.add_tensor(f"blk.{i}.{theirs}.weight", dense.astype(np.float16))
            else:
                writer.add_tensor(f"blk.{i}.{theirs}.weight", gguf.quants.quantize(dense, ternary_type),
                                  raw_dtype=ternary_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def peer_models(model, layers: int, peers: list[str]) -> dict[str, Path]:
    """{engine: GGUF path} of ``model`` for each peer (cached: the weights come from a fixed seed)."""
    import gguf

    files = {}
    directory = cache_root() / "gguf"
    directory.mkdir(parents=True, exist_ok=True)
    if "llama.cpp" in peers:
        files["llama.cpp"] = directory / f"bitnet-2b4t-{layers}l-tq2_0.gguf"
        if not files["llama.cpp"].exists():
            log("writing the TQ2_0 GGUF for llama.cpp")
            write_gguf(model, files["llama.cpp"].with_suffix(".tmp"), "bitnet", gguf.GGMLQuantizationType.TQ2_0)
            os.replace(files["llama.cpp"].with_suffix(".tmp"), files["llama.cpp"])
    if "ik_llama.cpp" in peers:
        files["ik_llama.cpp"] = directory / f"bitnet25-2b4t-{layers}l-iq2_bn.gguf"
        if not files["ik_llama.cpp"].exists():
            f16 = directory / f"bitnet25-2b4t-{layers}l-f16.gguf"
            log("writing the F16 bitnet-25 GGUF for ik_llama.cpp and quantizing it to IQ2_BN")
            write_gguf(model, f16, "bitnet-25", gguf.GGMLQuantizationType.F16)
            quantize = build_peer("ik_llama.cpp") / "llama-quantize"
            subprocess.run([str(quantize), "--token-embedding-type", "f16", str(f16),
                            str(files["ik_llama.cpp"].with_suffix(".tmp")), "iq2_bn"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.replace(files["ik_llama.cpp"].with_suffix(".tmp"), files["ik_llama.cpp"])
            f16.unlink()
    return files


# ---- measuring ----
def llama_bench(engine: str, gguf_path: Path, threads: int, prompt: int, gen: int, depth: int,
                repetitions: int = 1) -> dict:
    """llama-bench's mean tok/s over ``repetitions``, after its own warm-up run (peers.py repeats in rounds). At a
    depth, llama.cpp fills the cache first (``-d``) for both tests; ik_llama.cpp's llama-bench has no ``-d`` but times
    generation after a prompt of ``depth`` tokens (``-gp depth,gen``), so its prefill at a depth is not measured
    (None)."""
    bench = build_peer(engine) / "llama-bench"
    args = [str(bench), "-m", str(gguf_path), "-t", str(threads), "-p", str(prompt), "-n", str(gen),
            "-r", str(repetitions), "-o", "json"]
    if depth and engine == "ik_llama.cpp":
        args += ["-gp", f"{depth},{gen}"]
    elif depth:
        args += ["-d", str(depth)]
    rows = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    prefill = next(r for r in rows if r["n_prompt"] == prompt and r["n_gen"] == 0)["avg_ts"]
    if depth and engine == "ik_llama.cpp":
        return {"prefill_tokens_per_s": None,
                "decode_tokens_per_s": next(r for r in rows if r["n_prompt"] == depth and r["n_gen"] == gen)["avg_ts"]}
    return {"prefill_tokens_per_s": prefill,
            "decode_tokens_per_s": next(r for r in rows if r["n_prompt"] == 0 and r["n_gen"] == gen)["avg_ts"]}


BANDWIDTH_SOURCE = r"""
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
  /* 1 GiB, far past any cache. Integers: their sum is associative, so it vectorizes; a float sum would be one
     dependency chain bounded by the adder's latency (~4 GB/s), not by memory. */
  size_t n = (size_t)1 << 28;
  unsigned* a = aligned_alloc(64, n * sizeof(unsigned));
  memset(a, 1, n * sizeof(unsigned));
  double best = 1e30;
  for (int r = 0; r < 5; ++r) {
    double start = omp_get_wtime();
    unsigned sum = 0;
    #pragma omp parallel for reduction(+:sum) schedule(static)
    for (size_t i = 0; i < n; ++i) sum += a[i];
    double t = omp_get_wtime() - start;
    if (t < best) best = t;
    if (sum == 42) puts("");
  }
  printf("%f\n", n * sizeof(unsigned) / best / 1e9);
  return 0;
}
"""


def read_bandwidth(threads: int) -> float:
    """GB/s of a streaming read with ``threads`` threads (a 1 GiB sum, best of 5), built once."""
    source_key = hashlib.sha256(BANDWIDTH_SOURCE.encode()).hexdigest()[:8]
    binary = cache_root() / f"read-bandwidth-{cpu_key()}-{source_key}"
    if not binary.exists():
        source = cache_root() / "read_bandwidth.c"
        source.write_text(BANDWIDTH_SOURCE)
        subprocess.run(["gcc", "-O3", "-march=native", "-fopenmp", str(source), "-o", str(binary)], check=True)
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": str(threads)}).stdout
    return float(out.strip())


@dataclass
class Round:
    """One measurement of one engine at one thread count and depth, with the read bandwidth sampled just before and
    just after it (their mean)."""
    prefill: float | None  # None: not measured (ik_llama.cpp at a depth)
    decode: float
    bandwidth: float


@dataclass
class Row:
    """An engine at one thread count and depth: the medians of its rounds."""
    engine: str
    weights: str
    head: str
    threads: int
    depth: int
    bytes_per_token: float
    rounds: list[Round]

    @property
    def prefill(self) -> float | None:
        values = [r.prefill for r in self.rounds if r.prefill is not None]
        return statistics.median(values) if values else None

    @property
    def decode(self) -> float:
        return statistics.median(r.decode for r in self.rounds)

    @property
    def bandwidth(self) -> float:
        return statistics.median(r.bandwidth for r in self.rounds)

    def decode_GB_per_s(self) -> float:
        return self.bytes_per_token * self.decode / 1e9

    def bandwidth_share(self) -> float:
        """The median over rounds of decode GB/s over the bandwidth sampled around that round: each round's decode is
        set against the bandwidth the host gave in the same minute, not a sample taken minutes before or after."""
        return statistics.median(self.bytes_per_token * r.decode / 1e9 / r.bandwidth for r in self.rounds)

    def result(self) -> dict:
        """The entry of ``--json``'s "results" list."""
        return {"engine": self.engine, "threads": self.threads, "depth": self.depth,
                "decode_tokens_per_s": round(self.decode, 3),
                "prefill_tokens_per_s": None if self.prefill is None else round(self.prefill, 3),
                "head": self.head, "weights": self.weights, "bytes_per_token": int(self.bytes_per_token),
                "decode_GB_per_s": round(self.decode_GB_per_s(), 2),
                "read_bandwidth_GB_per_s": round(self.bandwidth, 2),
                "bandwidth_share": round(self.bandwidth_share(), 3),
                "rounds": [{"decode_tokens_per_s": round(r.decode, 3),
                            "prefill_tokens_per_s": None if r.prefill is None else round(r.prefill, 3),
                            "read_bandwidth_GB_per_s": round(r.bandwidth, 2)} for r in self.rounds]}


class BandwidthSamples:
    """Read bandwidth sampled around every single measurement. A shared host's bandwidth drifts by minutes (one core
    read 19-28 GB/s, two 27-50, within an hour on the same Zen 4 host): a sample taken around a whole engine's runs,
    minutes from the decode it is set against, moved the 2-thread share by 10-15 points from run to run."""

    def __init__(self, threads: list[int]):
        self.samples: dict[int, list[float]] = {t: [] for t in threads}

    def around(self, threads: int, run):
        """Calls run() between two samples at ``threads``; returns its result and the samples' mean GB/s."""
        before = read_bandwidth(threads)
        result = run()
        after = read_bandwidth(threads)
        self.samples[threads] += [before, after]
        return result, (before + after) / 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--gen", type=int, default=32)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--depth", type=int, nargs="+", default=[0],
                        help="tokens already in the KV cache when decoding starts (llama-bench -d)")
    parser.add_argument("--head", default="int8", choices=list(HEAD_PRECISIONS), help="edgebit's output head (export --head)")
    parser.add_argument("--kv-cache", default="fp16", choices=["fp16", "fp32"],
                        help="edgebit's KV cache (export --kv-cache; both peers keep theirs in f16 by default)")
    parser.add_argument("--engines", nargs="+", default=["edgebit", "llama.cpp", "ik_llama.cpp"],
                        choices=["edgebit", "llama.cpp", "ik_llama.cpp"])
    parser.add_argument("--rounds", type=int, default=3,
                        help="times each engine runs at each thread count and depth, interleaved; medians are reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cache_root().mkdir(parents=True, exist_ok=True)
    peers = [e for e in args.engines if e != "edgebit"]
    for engine in peers:
        build_peer(engine)
    model = random_ternary_model(args.layers)
    c = model.config
    ternary_weights = sum(layer.in_features * layer.out_features for layer in model.ternary_layers().values())
    head = c.vocab_size * c.hidden_size
    # A decode step also reads the KV cache up to its position: at depth 2048, ~170 MB a token in f16 (every engine
    # here keeps f16 keys and values), a fifth of the weights' bytes. Counted at the middle of the generated tokens.
    kv_per_position = 2 * c.num_hidden_layers * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
    kv_element = {"fp16": 2, "fp32": 4}[args.kv_cache]

    def kv_bytes(depth: int, element: int) -> float:
        return kv_per_position * element * (depth + args.prompt + args.gen / 2)

    files = peer_models(model, args.layers, peers)
    del model
    load = os.getloadavg()[0]
    bandwidth = BandwidthSamples(args.threads)
    bits = {"llama.cpp": ("TQ2_0 + F16 head", 2.0625), "ik_llama.cpp": ("IQ2_BN + F16 head", 2.0)}
    configs = [(depth, threads) for depth in args.depth for threads in args.threads]
    with contextlib.ExitStack() as stack:
        edgebit = (stack.enter_context(compiled_model(args.layers, max(args.depth) + args.prompt + args.gen + 8,
                                                      args.head, args.kv_cache))
                   if "edgebit" in args.engines else None)
        rows: dict[tuple[str, int, int], Row] = {}
        for engine in args.engines:
            for depth, threads in configs:
                if engine == "edgebit":
                    rows[engine, depth, threads] = Row(
                        engine, f"planar 2-bit + {args.head} head, {args.kv_cache} KV (TVM)", args.head, threads,
                        depth, edgebit.bytes_per_token + kv_bytes(depth, kv_element), [])
                else:
                    weights, bits_per_weight = bits[engine]
                    rows[engine, depth, threads] = Row(
                        engine, weights, "fp16", threads, depth,
                        ternary_weights * bits_per_weight / 8 + head * 2 + kv_bytes(depth, 2), [])
        # Rounds: every engine at every thread count and depth once per round, so each engine meets the host's
        # bandwidth drift alike; each single run between two bandwidth samples.
        for round_index in range(args.rounds):
            log(f"round {round_index + 1} of {args.rounds}")
            for engine in args.engines:
                for depth, threads in configs:
                    if engine == "edgebit":
                        measured, near = bandwidth.around(
                            threads, lambda: edgebit.time(threads, args.prompt, args.gen, depth))
                    else:
                        measured, near = bandwidth.around(
                            threads, lambda: llama_bench(engine, files[engine], threads, args.prompt, args.gen, depth))
                    rows[engine, depth, threads].rounds.append(
                        Round(measured["prefill_tokens_per_s"], measured["decode_tokens_per_s"], near))
    rows = list(rows.values())
    fastest = {(t, d): {kind: max([getattr(r, kind) for r in rows if (r.threads, r.depth) == (t, d)
                                   and r.engine in peers and getattr(r, kind) is not None] or [0])
                        for kind in ("prefill", "decode")}
               for t in args.threads for d in args.depth}
    if args.json:
        print(json.dumps({"shape": {**BITNET_2B, "num_hidden_layers": args.layers}, "prompt": args.prompt,
                          "gen": args.gen, "rounds": args.rounds, "load_average": load,
                          "load_average_after": os.getloadavg()[0],
                          "read_bandwidth_samples_GB_per_s": bandwidth.samples,
                          "results": [r.result() for r in rows]}, indent=2))
        return 0
    print(f"BitNet b1.58 2B-4T shape ({args.layers} layers, random ternary weights), prompt {args.prompt}, "
          f"{args.gen} generated; load average {load:.1f}; read bandwidth sampled around each run "
          + ", ".join(f"{min(v):.1f}-{max(v):.1f} GB/s @{t}T" for t, v in bandwidth.samples.items()))
    print(f"{'engine':<14}{'weights':<34}{'thr':>4}{'depth':>6}{'prefill t/s':>12}{'vs peer':>8}{'decode t/s':>11}"
          f"{'vs peer':>8}{'GB/token':>9}{'GB/s':>7}{'of bw':>7}")
    for r in rows:
        speed = r.decode_GB_per_s()
        best = fastest[(r.threads, r.depth)]
        ratio = lambda kind: f"{getattr(r, kind) / best[kind]:.2f}x" if best[kind] and getattr(r, kind) else "-"
        prefill = "-" if r.prefill is None else f"{r.prefill:.1f}"
        print(f"{r.engine:<14}{r.weights:<34}{r.threads:>4}{r.depth:>6}{prefill:>12}{ratio('prefill'):>8}"
              f"{r.decode:>11.1f}{ratio('decode'):>8}{r.bytes_per_token / 1e9:>9.2f}{speed:>7.1f}"
              f"{r.bandwidth_share():>7.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
