"""edgebit's Bi-Mamba beside llama.cpp's Mamba-2 in one run: the Bi-Mamba 2.7B shape (d_model 2560, 64 layers,
80 heads x 64, state 128, 1 group, vocab 32000, tied head) with the same random weights, prefill and decode tokens/s
at 1 and 2 threads. Opt-in (`make bench-peers`), never in CI: llama.cpp builds from source on first use (peers.py).

    .venv/bin/python benchmarks/peers_mamba2.py [--layers 64] [--prompt 128] [--gen 32] [--threads 1 2] [--json]

edgebit: in_proj / out_proj binary (FBI-Linear, 1 bit per weight + alpha, beta per input column), int8 head,
compiled through edgebit's TVM path for this host (binary GEMV, selective scan), timed in-process as peers.py times
BitNet. llama.cpp (arch `mamba2`, its `llama-bench`): the same model with W_hat = alpha * sign(W) + beta written
at Q4_0 and at Q8_0 with the `gguf` package (what its users would pick for a 2.7B model), the tied embedding at Q8_0
in both files (8.5 bits, against edgebit's int8 head), conv / SSM parameters and norms in F32.
Written GGUFs are cached under $EDGEBIT_CACHE/peers/gguf (4.4 GB at 64 layers; the weights come from a fixed seed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import build_peer, cache_root, llama_bench, log, read_bandwidth  # noqa: E402
from ternary_gemv import head_bytes  # noqa: E402
from timing import median_seconds  # noqa: E402

BIMAMBA_2B7 = dict(vocab_size=32000, hidden_size=2560, num_heads=80, head_dim=64, state_size=128, expand=2,
                   n_groups=1, conv_kernel=4, tie_word_embeddings=True)
GGUF_TYPES = ("Q4_0", "Q8_0")


def random_bimamba_model(layers: int, seed: int = 0):
    """A Bi-Mamba 2.7B-shaped model with random packed signs, alpha and beta, built without its latent fp32
    weights (11 GB at 64 layers)."""
    import torch

    from edgebit.models.bimamba.model import BiMambaConfig, BiMambaForCausalLM

    config = BiMambaConfig(**BIMAMBA_2B7, num_hidden_layers=layers)
    with torch.device("meta"):
        model = BiMambaForCausalLM(config)
    binary = model.binary_layers()
    for layer in binary.values():
        layer.weight = None
    model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    for layer in binary.values():
        packed_columns = -(-layer.in_features // 8)
        signs = torch.randint(0, 256, (layer.out_features, packed_columns), generator=gen, dtype=torch.uint8)
        alpha = torch.rand(1, layer.in_features, generator=gen) * 0.02 + 0.01
        beta = torch.randn(1, layer.in_features, generator=gen) * 0.002
        layer.set_packed(signs, alpha, beta)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("alpha", "beta")):
                continue
            if "A_log" in name:
                param.copy_(torch.log(torch.arange(1, param.numel() + 1, dtype=torch.float32)))
            elif name.endswith(("norm.weight", ".D")) or "norm_f" in name:
                param.fill_(1.0)
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
    return model.eval()


def write_mamba2_gguf(model, path: Path, weight_type: str) -> None:
    """``model`` as a llama.cpp `mamba2` GGUF: projections W_hat in ``weight_type``, the tied embedding at Q8_0.
    GGUF lists dimensions innermost first, so numpy [out, in] is llama.cpp's {in, out}."""
    import gguf

    c = model.config
    quant = gguf.GGMLQuantizationType[weight_type]
    writer = gguf.GGUFWriter(str(path), "mamba2")
    writer.add_context_length(1 << 20)
    writer.add_embedding_length(c.hidden_size)
    writer.add_feed_forward_length(0)
    writer.add_head_count(0)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_ssm_conv_kernel(c.conv_kernel)
    writer.add_ssm_inner_size(c.intermediate_size)
    writer.add_ssm_state_size(c.state_size)
    writer.add_ssm_time_step_rank(c.num_heads)
    writer.add_ssm_group_count(c.n_groups)
    writer.add_layer_norm_rms_eps(c.layer_norm_epsilon)
    writer.add_file_type(gguf.LlamaFileType[f"MOSTLY_{weight_type}"])
    # a placeholder vocabulary of the model's size, as peers.py writes for BitNet (llama-bench never tokenizes)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"<t{i}>" for i in range(c.vocab_size)])
    writer.add_token_scores([0.0] * c.vocab_size)
    writer.add_token_types([gguf.TokenType.NORMAL] * c.vocab_size)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)

    def quantized(name: str, dense: np.ndarray, kind) -> None:
        writer.add_tensor(name, gguf.quants.quantize(np.ascontiguousarray(dense, np.float32), kind), raw_dtype=kind)

    def f32(name: str, tensor) -> None:
        writer.add_tensor(name, np.ascontiguousarray(tensor.detach().float().numpy()))

    quantized("token_embd.weight", model.embeddings.weight.detach().numpy(), gguf.GGMLQuantizationType.Q8_0)
    f32("output_norm.weight", model.norm_f.weight)
    for i, block in enumerate(model.layers):
        mixer = block.mixer
        f32(f"blk.{i}.attn_norm.weight", block.norm.weight)
        quantized(f"blk.{i}.ssm_in.weight", mixer.in_proj.dense_weight().numpy(), quant)
        f32(f"blk.{i}.ssm_conv1d.weight", mixer.conv1d.weight.reshape(c.conv_dim, c.conv_kernel))
        f32(f"blk.{i}.ssm_conv1d.bias", mixer.conv1d.bias)
        f32(f"blk.{i}.ssm_dt.bias", mixer.dt_bias)
        f32(f"blk.{i}.ssm_a", -mixer.A_log.exp().reshape(c.num_heads, 1))
        f32(f"blk.{i}.ssm_d", mixer.D.reshape(c.num_heads, 1))
        f32(f"blk.{i}.ssm_norm.weight", mixer.norm.weight.reshape(c.n_groups, -1))
        quantized(f"blk.{i}.ssm_out.weight", mixer.out_proj.dense_weight().numpy(), quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def peer_files(model, layers: int) -> dict[str, Path]:
    directory = cache_root() / "gguf"
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for weight_type in GGUF_TYPES:
        path = directory / f"mamba2-bimamba2b7-{layers}l-{weight_type.lower()}.gguf"
        if not path.exists():
            log(f"writing the {weight_type} Mamba-2 GGUF for llama.cpp (minutes: numpy quantization)")
            write_mamba2_gguf(model, path.with_suffix(".tmp"), weight_type)
            os.replace(path.with_suffix(".tmp"), path)
        files[weight_type] = path
    return files


def edgebit_worker(work: Path, prompt: int, gen: int) -> dict:
    """In a fresh process with TVM_NUM_THREADS set: prefill of ``prompt`` tokens from the empty state, then one-token
    decode steps carrying the conv and SSM states (medians)."""
    import tvm

    from edgebit.runtimes.tvm.backend import load_for_host

    info = json.loads((work / "info.json").read_text())
    step = load_for_host(work / "model.so", work / "weights.params", info["takes_position"])
    zeros = lambda: [tvm.runtime.tensor(np.zeros(s, np.float32)) for s in info["state_shapes"]]
    ids = np.random.default_rng(0).integers(0, info["vocab_size"], (1, prompt), dtype=np.int64)
    prefill_s = median_seconds(lambda: step(ids, 0, *zeros(), last_only=True), 3, warmup=1)  # as generate prefills
    states = list(step(ids, 0, *zeros())[1:])
    token = np.array([[1]], dtype=np.int64)
    samples = []
    for i in range(gen):
        start = time.perf_counter()
        out = step(token, prompt + i, *states)
        samples.append(time.perf_counter() - start)
        states = list(out[1:])
    return {"prefill_tokens_per_s": prompt / prefill_s, "decode_tokens_per_s": 1 / statistics.median(samples[1:])}


def edgebit_rows(model, threads_list, prompt: int, gen: int) -> list[dict]:
    """``model`` (its head at the precision it runs with) compiled for this host and timed at each thread count."""
    from edgebit.models import summarize
    from edgebit.runtimes.tvm.backend import compile_model
    from edgebit.toolchain.host_cpu import native_host_target

    # what one decode step reads: packed signs with alpha / beta, and the head
    bytes_per_token = summarize(model)["packed_bytes"]["binary"] + head_bytes(model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        compiled = compile_model(model, native_host_target(), max_seq_len=prompt + gen + 8, out_dir=work)
        (work / "info.json").write_text(json.dumps({"state_shapes": compiled.graph.state_shapes,
                                                    "takes_position": compiled.takes_position,
                                                    "vocab_size": model.config.vocab_size}))
        for threads in threads_list:
            env = {**os.environ, "TVM_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
            out = subprocess.run([sys.executable, __file__, "--worker", str(work), "--prompt", str(prompt),
                                  "--gen", str(gen)], capture_output=True, text=True, env=env, check=True).stdout
            rows.append({"engine": "edgebit", "weights": "binary 1-bit + int8 head (TVM)", "threads": threads,
                         "bytes_per_token": bytes_per_token, **json.loads(out.strip().splitlines()[-1])})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=64)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--gen", type=int, default=32)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(edgebit_worker(args.worker, args.prompt, args.gen)))
        return 0
    from edgebit.models.head import set_head_precision

    cache_root().mkdir(parents=True, exist_ok=True)
    build_peer("llama.cpp")
    model = random_bimamba_model(args.layers)
    files = peer_files(model, args.layers)  # W_hat and the embedding in full precision, quantized by gguf
    load = os.getloadavg()[0]
    bandwidth = {t: read_bandwidth(t) for t in args.threads}
    set_head_precision(model, "int8")  # export's default head, after the GGUFs took the fp32 table
    rows = edgebit_rows(model, args.threads, args.prompt, args.gen)
    del model
    for weight_type, path in files.items():
        for threads in args.threads:
            measured = llama_bench("llama.cpp", path, threads, args.prompt, args.gen, 0, repetitions=3)
            # a step reads every tensor of the file (the norms and SSM parameters are a small part of it)
            rows.append({"engine": "llama.cpp", "weights": f"{weight_type} + Q8_0 head", "threads": threads,
                         "bytes_per_token": os.path.getsize(path), **measured})
    if args.json:
        print(json.dumps({"shape": {**BIMAMBA_2B7, "num_hidden_layers": args.layers}, "prompt": args.prompt,
                          "gen": args.gen, "load_average": load, "read_bandwidth_GB_per_s": bandwidth,
                          "results": rows}, indent=2))
        return 0
    print(f"Bi-Mamba 2.7B shape ({args.layers} layers, random weights), prompt {args.prompt}, {args.gen} generated; "
          f"load average {load:.1f}; read bandwidth " + ", ".join(f"{bandwidth[t]:.1f} GB/s @{t}T" for t in args.threads))
    print(f"{'engine':<11}{'weights':<32}{'thr':>4}{'prefill t/s':>12}{'decode t/s':>11}{'vs Q4_0':>8}{'GB/token':>9}"
          f"{'of bw':>7}")
    for row in rows:
        q4 = next(r for r in rows if r["engine"] == "llama.cpp" and r["weights"].startswith("Q4_0")
                  and r["threads"] == row["threads"])
        read = row["bytes_per_token"] * row["decode_tokens_per_s"] / 1e9
        print(f"{row['engine']:<11}{row['weights']:<32}{row['threads']:>4}{row['prefill_tokens_per_s']:>12.1f}"
              f"{row['decode_tokens_per_s']:>11.1f}{row['decode_tokens_per_s'] / q4['decode_tokens_per_s']:>7.2f}x"
              f"{row['bytes_per_token'] / 1e9:>9.2f}{read / bandwidth[row['threads']]:>7.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
