"""Decode and prefill speed of the same model through every runtime edgebit exports, side by side in one run.

    .venv/bin/python benchmarks/runtimes_decode.py [--family bitnet|bimamba] [--hidden 1024] [--layers 4]

A model with random weights (BitNet b1.58: ternary; Bi-Mamba: binary in/out_proj) is saved in edgebit's packed
format, exported for this host's target with ``--runtime all`` (TVM, ONNX Runtime custom ops, ONNX Runtime
portable MatMulNBits bits=2, ExecuTorch) and timed through each runtime's C++ device runner on the local device
(``edgebit bench``'s measurement: greedy prefill + decode, median of the runs). Ratios are against TVM.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


def random_model(family: str, hidden: int, layers: int, vocab: int):
    import torch

    torch.manual_seed(0)
    if family == "bimamba":
        from edgebit.models.bimamba.model import BiMambaConfig, BiMambaForCausalLM

        config = BiMambaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                               num_heads=2 * hidden // 64, head_dim=64, state_size=128)
        model = BiMambaForCausalLM(config)
        with torch.no_grad():
            for layer in model.binary_layers().values():
                layer.weight.add_((layer.weight == 0).float() * 1e-3)  # one bit stores no sign(0)
            for block in model.layers:
                block.mixer.dt_bias.normal_(0, 0.5)  # an all-zero tensor is refused as a known checkpoint defect
        return model.pack()
    from edgebit.models.bitnet.model import BitNetConfig, BitNetForCausalLM

    config = BitNetConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=int(hidden * 2.7) // 64 * 64,
                          num_hidden_layers=layers, num_attention_heads=hidden // 128, num_key_value_heads=hidden // 512
                          or 1, tie_word_embeddings=True)
    return BitNetForCausalLM(config).pack()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=("bitnet", "bimamba"), default="bitnet")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from edgebit.bundle import Bundle
    from edgebit.checkpoints.edgebit_format import save_checkpoint
    from edgebit.validate.session import DeviceSession, measure_speed
    from edgebit.devices import open_device
    from edgebit.export import ExportConfig, export_bundle
    from edgebit.toolchain.host_cpu import host_tvm_cpu
    from edgebit.targets import resolve_target

    target = resolve_target("x86_64-avx512" if "avx512vnni" in host_tvm_cpu()[1] else "x86_64")
    with tempfile.TemporaryDirectory() as work:
        checkpoint = Path(work) / "model"
        save_checkpoint(random_model(args.family, args.hidden, args.layers, args.vocab), checkpoint)
        bundle_dir = Path(work) / "model.bundle"
        max_seq_len = args.prompt_tokens + args.new_tokens + 8
        export_bundle(ExportConfig(checkpoint, target, bundle_dir, max_seq_len, runtimes=("all",)))
        bundle = Bundle.open(bundle_dir)
        os.environ.pop("TVM_NUM_THREADS", None)
        with DeviceSession(bundle, open_device("local"), threads=args.threads) as session:
            speeds = [measure_speed(session, r, args.prompt_tokens, args.new_tokens, repeats=5)
                      for r in bundle.runtimes]
    tvm = next(s for s in speeds if s.runtime == "tvm")
    print(f"{args.family}, hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}, target {target.name}, "
          f"{args.threads} thread(s), prompt {args.prompt_tokens}, {args.new_tokens} new tokens (medians of 5):")
    print(f"  {'runtime':<14} {'prefill tok/s':>14} {'decode tok/s':>13} {'decode vs tvm':>14}")
    for s in speeds:
        print(f"  {s.runtime:<14} {s.prefill_tokens_per_s:14.1f} {s.decode_tokens_per_s:13.1f} "
              f"{s.decode_tokens_per_s / tvm.decode_tokens_per_s:13.2f}x")


if __name__ == "__main__":
    main()
