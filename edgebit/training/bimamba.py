"""Train the small Bi-Mamba demo model: a full-precision Mamba-2 first, then binary in_proj/out_proj with QAT.

This is how the embedded Bi-Mamba demo was made (same corpus and tokenizer as the BitNet demo, edgebit.training.bitnet):

    scripts/fetch_corpus.sh
    python -m edgebit.training.bimamba --corpus ~/.cache/edgebit/corpus -o edgebit/demo/bimamba-demo

Phase 1 trains every weight in full precision (FBILinear.full_precision). Phase 2 replaces in_proj and out_proj
by W_hat = alpha * sign(W) + beta, with alpha and beta started at the per-column least-squares fit of
``edgebit binarize`` (edgebit.models.bimamba.checkpoints.fit_fbi), and trains on with straight-through signs. Each phase
runs for a wall-clock budget (the learning rate follows the elapsed fraction of it), which keeps the recipe
within its time on a shared machine; the steps actually taken are recorded. Held-out perplexity is reported for
the full-precision model and for the packed binary model, which is what the exported bundles compute.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer

from edgebit.checkpoints.edgebit_format import save_checkpoint
from edgebit.models.bimamba.checkpoints import fit_fbi
from edgebit.training.corpus import split_documents
from edgebit.errors import EdgebitError
from edgebit.models.bimamba.model import BiMambaConfig, BiMambaForCausalLM
from edgebit.training.bitnet import END_OF_TEXT, encode_documents, perplexity, random_batch, train_step

BITNET_TOKENIZER = Path(__file__).parent / "demo" / "bitnet-demo" / "tokenizer.json"


def init_mamba2(model: BiMambaForCausalLM, generator: torch.Generator) -> None:
    """Mamba-2's initialisation of the SSM parameters: dt log-uniform in [1e-3, 1e-1] (stored through the inverse
    softplus in dt_bias) and A uniform in [1, 16], so heads start with a spread of memory lengths."""
    with torch.no_grad():
        for block in model.layers:
            mixer = block.mixer
            heads = mixer.dt_bias.numel()
            dt = torch.exp(torch.rand(heads, generator=generator) * (math.log(0.1) - math.log(1e-3))
                           + math.log(1e-3))
            mixer.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            mixer.A_log.copy_(torch.log(torch.empty(heads).uniform_(1, 16, generator=generator)))


def set_full_precision(model: BiMambaForCausalLM, value: bool) -> None:
    for layer in model.binary_layers().values():
        layer.full_precision = value


@torch.no_grad()
def binarize(model: BiMambaForCausalLM) -> float:
    """Switch in_proj/out_proj to W_hat with the least-squares alpha, beta; returns the mean relative error."""
    errors = []
    for layer in model.binary_layers().values():
        _, alpha, beta, error = fit_fbi(layer.weight.detach())
        layer.alpha.copy_(alpha)
        layer.beta.copy_(beta)
        layer.full_precision = False
        errors.append(error)
    return sum(errors) / len(errors)


def make_optimizer(model: BiMambaForCausalLM, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """Weight decay on matrices only (not on norms, A_log, D, dt_bias, conv, nor the FBI alpha and beta)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.dim() == 2 and not name.endswith((".alpha", ".beta")):
            decay.append(param)
        else:
            no_decay.append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))


def train_phase(model: BiMambaForCausalLM, stream: torch.Tensor, args, seconds: float, peak_lr: float,
                generator: torch.Generator, label: str) -> dict:
    """Train until ``seconds`` have passed: linear warm-up over ``args.warmup`` steps, then a cosine decay to 10 %
    of the peak over the elapsed fraction of the budget."""
    optimizer = make_optimizer(model, peak_lr, args.weight_decay)
    model.train()
    start, step, progress = time.time(), 0, 0.0
    while progress < 1.0:
        cosine = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
        lr = peak_lr * min((step + 1) / args.warmup, cosine)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = train_step(model, optimizer, random_batch(stream, args.batch, args.seq_len, generator))
        elapsed = time.time() - start
        progress = elapsed / seconds
        if step % 10 == 0:
            print(f"{label} step {step} loss {loss.item():.3f} lr {lr:.2e} {elapsed:.0f}s", flush=True)
        step += 1
    return {"steps": step, "tokens_seen": step * args.batch * args.seq_len, "seconds": round(time.time() - start),
            "peak_lr": peak_lr, "last_loss": round(loss.item(), 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="folder made by scripts/fetch_corpus.sh")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, default=BITNET_TOKENIZER,
                        help="tokenizer.json to use (default: the BitNet demo's, so both demos share it)")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--state-size", type=int, default=64)
    parser.add_argument("--expand", type=int, default=2)
    parser.add_argument("--n-groups", type=int, default=1)
    parser.add_argument("--conv-kernel", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--fp-minutes", type=float, default=16.0, help="wall-clock budget of phase 1")
    parser.add_argument("--qat-minutes", type=float, default=16.0, help="wall-clock budget of phase 2")
    parser.add_argument("--fp-lr", type=float, default=2e-3)
    parser.add_argument("--qat-lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--eval-windows", type=int, default=200, help="held-out windows of --seq-len tokens")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a shared 2-core machine: small ops do not spin)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    if not args.tokenizer.is_file():
        raise EdgebitError(f"{args.tokenizer}: no such tokenizer file (pass --tokenizer TOKENIZER.json)")
    tokenizer = Tokenizer.from_file(str(args.tokenizer))
    train_docs, held_out_docs = split_documents(args.corpus)
    train_stream = encode_documents(tokenizer, train_docs)
    held_out_stream = encode_documents(tokenizer, held_out_docs)
    print(f"tokens: train {train_stream.numel()}, held-out {held_out_stream.numel()}", flush=True)

    eot = tokenizer.token_to_id(END_OF_TEXT)
    intermediate = args.expand * args.hidden_size
    config = BiMambaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=args.hidden_size,
                           num_hidden_layers=args.layers, num_heads=intermediate // args.head_dim,
                           head_dim=args.head_dim, state_size=args.state_size, expand=args.expand,
                           n_groups=args.n_groups, conv_kernel=args.conv_kernel, tie_word_embeddings=True,
                           bos_token_id=eot, eos_token_id=eot)
    model = BiMambaForCausalLM(config)
    generator = torch.Generator().manual_seed(args.seed)
    init_mamba2(model, generator)
    start = time.time()

    def held_out_perplexity() -> float:
        return round(perplexity(model, held_out_stream, args.seq_len, args.eval_windows), 3)

    set_full_precision(model, True)
    full_precision = train_phase(model, train_stream, args, args.fp_minutes * 60, args.fp_lr, generator, "fp")
    full_precision["held_out_perplexity"] = held_out_perplexity()
    print(f"held-out perplexity (full precision): {full_precision['held_out_perplexity']:.2f}", flush=True)

    fit_error = binarize(model)
    binary = {"initial_fit_relative_error": round(fit_error, 4),
              "initial_held_out_perplexity": held_out_perplexity()}
    print(f"binarized: mean relative error of W_hat {fit_error:.3f}, held-out perplexity before QAT "
          f"{binary['initial_held_out_perplexity']:.2f}", flush=True)
    binary.update(train_phase(model, train_stream, args, args.qat_minutes * 60, args.qat_lr, generator, "qat"))
    model.pack()
    binary["held_out_perplexity"] = held_out_perplexity()
    print(f"held-out perplexity (packed binary model): {binary['held_out_perplexity']:.2f}", flush=True)

    settings = {k: v for k, v in vars(args).items() if k not in ("corpus", "output", "tokenizer")}
    training = {"command": "python -m edgebit.training.bimamba --corpus CORPUS -o OUT "
                           + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items()),
                "corpus": "Debian python3.11-doc reStructuredText sources (edgebit.training.corpus, every 20th file held out)",
                "tokenizer": "the BitNet demo's (edgebit/demo/bitnet-demo/tokenizer.json)",
                "train_tokens": int(train_stream.numel()), "held_out_tokens": int(held_out_stream.numel()),
                "full_precision": full_precision, "binary_qat": binary,
                "tokens_seen": full_precision["tokens_seen"] + binary["tokens_seen"],
                "full_precision_held_out_perplexity": full_precision["held_out_perplexity"],
                "held_out_perplexity": binary["held_out_perplexity"],
                "held_out_perplexity_note": "token-level perplexity on the held-out files in windows of "
                                            f"{args.seq_len} tokens (edgebit.training.bitnet.perplexity); "
                                            "held_out_perplexity is the packed binary model's after both phases, "
                                            "full_precision_held_out_perplexity the model's at the end of phase 1 "
                                            "(it has seen only phase 1's tokens)",
                "seconds": round(time.time() - start)}
    save_checkpoint(model, args.output, tokenizer_file=args.tokenizer, extra={"training": training})
    print(json.dumps(training, indent=2))


if __name__ == "__main__":
    main()
