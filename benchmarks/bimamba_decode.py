"""Bi-Mamba decode step vs fp32 PyTorch Mamba-2 of the same shape, side by side in one run, on this host.

    .venv/bin/python benchmarks/bimamba_decode.py [--layers 2] [--threads 1]

Shape: Bi-Mamba 2.7B's mixer (d_model 2560, 80 heads x 64, state 128, 1 group), trimmed to a few layers: the step
is timed at two depths (L and 3L), which gives the time per layer and the fixed part (embedding + head), and from
them the step of the full 64-layer model. edgebit: the model binarized (1-bit in/out_proj), compiled
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


def step_times(layers: int, threads: int, steps: int) -> tuple[float, float]:
    """(torch fp32 s, edgebit s) of one decode step for a model of ``layers`` layers."""

    import numpy as np
    import torch
    import tvm
    from transformers import Mamba2Config, Mamba2ForCausalLM

    from edgebit.runtimes.tvm.backend import compile_model, load_for_host
    from edgebit.models.bimamba.checkpoints import fit_fbi
    from edgebit.toolchain.host_cpu import host_tvm_cpu, native_host_target
    from edgebit.models.bimamba.model import BiMambaConfig, BiMambaForCausalLM

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    hf = Mamba2ForCausalLM(Mamba2Config(**SHAPE, num_hidden_layers=layers, tie_word_embeddings=True)).eval()
    ours = BiMambaForCausalLM(BiMambaConfig(**SHAPE, num_hidden_layers=layers))
    state = {name.replace("backbone.", ""): value for name, value in hf.state_dict().items()}
    with torch.no_grad():
        for i, block in enumerate(ours.layers):
            for proj in ("in_proj", "out_proj"):
                signs, alpha, beta, _ = fit_fbi(state.pop(f"layers.{i}.mixer.{proj}.weight"))
                getattr(block.mixer, proj).set_binary(signs, alpha, beta)
        rest = {k: v for k, v in state.items() if k in ours.state_dict()}
        ours.load_state_dict({**ours.state_dict(), **rest})
    mcpu, features = host_tvm_cpu()
    target = native_host_target()
    with tempfile.TemporaryDirectory() as work:
        compiled = compile_model(ours.eval(), target, max_seq_len=64, out_dir=Path(work))
        step = load_for_host(compiled.library, compiled.weights, compiled.takes_position)
        states = [tvm.runtime.tensor(np.zeros(s, dtype=np.float32)) for s in compiled.graph.state_shapes]
        token = np.array([[1]], dtype=np.int64)

        def edgebit_step():
            nonlocal states
            out = step(token, 0, *states)
            states = list(out[1:])

        edgebit_s = median_seconds(edgebit_step, steps, warmup=1)

    with torch.no_grad():
        cache = hf(torch.tensor([[1, 2, 3]]), use_cache=True).cache_params
        position = [3]

        def torch_step():
            hf(torch.tensor([[1]]), cache_params=cache, use_cache=True, cache_position=torch.tensor([position[0]]))
            position[0] += 1

        torch_s = median_seconds(torch_step, steps, warmup=1)
    return torch_s, edgebit_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2, help="the smaller of the two depths measured")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--project", type=int, default=64, help="depth to project to (Bi-Mamba 2.7B: 64)")
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    from edgebit.toolchain.host_cpu import host_tvm_cpu

    shallow, deep = args.layers, 3 * args.layers
    torch_a, ours_a = step_times(shallow, args.threads, args.steps)
    torch_b, ours_b = step_times(deep, args.threads, args.steps)
    torch_layer, ours_layer = (torch_b - torch_a) / (deep - shallow), (ours_b - ours_a) / (deep - shallow)
    torch_rest, ours_rest = torch_a - shallow * torch_layer, ours_a - shallow * ours_layer
    project = lambda rest, layer: rest + args.project * layer
    print(f"Mamba-2 decode step, d_model 2560, 80 heads x 64, state 128, vocab {SHAPE['vocab_size']}, "
          f"{args.threads} thread(s), mcpu={host_tvm_cpu()[0]}, medians of {args.steps}:")
    print(f"  {'':<34} {'torch fp32':>11} {'edgebit':>9} {'speed-up':>9}")
    rows = [(f"step, {shallow} layers (measured)", torch_a, ours_a), (f"step, {deep} layers (measured)", torch_b, ours_b),
            ("per layer (binary GEMV + scan)", torch_layer, ours_layer),
            ("embedding + fp32 head", torch_rest, ours_rest),
            (f"step, {args.project} layers (projected)", project(torch_rest, torch_layer),
             project(ours_rest, ours_layer))]
    for name, t, o in rows:
        print(f"  {name:<34} {t * 1e3:9.2f}ms {o * 1e3:7.2f}ms {t / o:8.2f}x")
    print("  target >= 5x; both sides use an fp32 output head (Bi-Mamba keeps embeddings full precision)")


if __name__ == "__main__":
    main()
