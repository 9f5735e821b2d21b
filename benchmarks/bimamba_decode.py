"""Bi-Mamba decode step vs fp32 PyTorch Mamba-2 of the same shape, side by side in one run, on this host.

    .venv/bin/python benchmarks/bimamba_decode.py [--layers 4] [--threads 1]

Shape: Bi-Mamba 2.7B's mixer (d_model 2560, 80 heads x 64, state 128, 1 group), trimmed to a few layers (decode
time is per layer plus the head, so ratios carry over). edgebit: the model binarized (1-bit in/out_proj), compiled
through edgebit's TVM path for this host (binary GEMV + selective scan kernels, conv and SSM state as inputs),
one-token steps timed in-process. Baseline: transformers' Mamba2ForCausalLM in fp32 (its PyTorch path) with its
cache, one-token steps. Medians.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

from timing import median_seconds

warnings.filterwarnings("ignore")
SHAPE = dict(vocab_size=32000, hidden_size=2560, num_heads=80, head_dim=64, state_size=128, expand=2, n_groups=1,
             conv_kernel=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)

    import dataclasses

    import numpy as np
    import torch
    import tvm
    from transformers import Mamba2Config, Mamba2ForCausalLM

    from edgebit.backends.tvm_backend import compile_model, load_for_host
    from edgebit.checkpoints.mamba import fit_fbi
    from edgebit.host_cpu import host_tvm_cpu
    from edgebit.models.bimamba import BiMambaConfig, BiMambaForCausalLM
    from edgebit.targets import resolve_target

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    hf = Mamba2ForCausalLM(Mamba2Config(**SHAPE, num_hidden_layers=args.layers, tie_word_embeddings=True)).eval()
    ours = BiMambaForCausalLM(BiMambaConfig(**SHAPE, num_hidden_layers=args.layers))
    state = {}
    for name, value in hf.state_dict().items():
        state[name.replace("backbone.", "").replace("embeddings.", "embeddings.")] = value
    with torch.no_grad():
        for i, block in enumerate(ours.layers):
            for proj in ("in_proj", "out_proj"):
                signs, alpha, beta, _ = fit_fbi(state.pop(f"layers.{i}.mixer.{proj}.weight"))
                getattr(block.mixer, proj).set_binary(signs, alpha, beta)
        rest = {k: v for k, v in state.items() if k in ours.state_dict()}
        ours.load_state_dict({**ours.state_dict(), **rest})
    mcpu, features = host_tvm_cpu()
    base = resolve_target("x86_64")
    target = dataclasses.replace(base, features=features, tvm={**base.tvm, "mcpu": mcpu})
    with tempfile.TemporaryDirectory() as work:
        compiled = compile_model(ours.eval(), target, max_seq_len=64, out_dir=Path(work))
        step = load_for_host(compiled.library, compiled.weights, compiled.takes_position)
        states = [tvm.runtime.tensor(np.zeros(s, dtype=np.float32)) for s in compiled.graph.state_shapes]
        token = np.array([[1]], dtype=np.int64)

        def edgebit_step():
            nonlocal states
            out = step(token, 0, *states)
            states = list(out[1:])

        edgebit_s = median_seconds(edgebit_step, args.steps, warmup=1)

    with torch.no_grad():
        out = hf(torch.tensor([[1, 2, 3]]), use_cache=True)
        cache = out.cache_params
        position = [3]

        def torch_step():
            result = hf(torch.tensor([[1]]), cache_params=cache, use_cache=True,
                        cache_position=torch.tensor([position[0]]))
            position[0] += 1
            return result

        torch_s = median_seconds(torch_step, args.steps, warmup=1)
    binary_bytes = sum(m.out_features * -(-m.in_features // 8) + 8 * m.in_features
                       for m in ours.binary_layers().values())
    fp32_bytes = sum(4 * m.out_features * m.in_features for m in ours.binary_layers().values())
    print(f"Mamba-2 decode step, d_model 2560, {args.layers} layers, {args.threads} thread(s), mcpu={mcpu} (median of "
          f"{args.steps}):")
    print(f"  torch fp32 (transformers Mamba2)  {torch_s * 1e3:9.2f} ms   in/out_proj weights {fp32_bytes / 1e6:8.1f} MB")
    print(f"  edgebit Bi-Mamba (TVM)            {edgebit_s * 1e3:9.2f} ms   in/out_proj weights "
          f"{binary_bytes / 1e6:8.1f} MB")
    print(f"  speed-up {torch_s / edgebit_s:.2f}x (target >= 5x); both include the fp32 output head "
          f"({SHAPE['vocab_size']} x {SHAPE['hidden_size']})")


if __name__ == "__main__":
    main()
