"""Train a small BitNet b1.58 with quantization-aware training and save it in edgebit's packed format.

This is how the embedded demo model was made (see README, "The demo model"):

    scripts/fetch_corpus.sh
    python -m edgebit.training.bitnet --corpus ~/.cache/edgebit/corpus -o edgebit/demo/bitnet-demo

It trains a byte-level BPE tokenizer on the training split, then the model with straight-through estimators (every
forward pass sees ternary weights and int8 activations), and reports held-out perplexity of the packed model, which
is what the exported bundles compute.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from edgebit.checkpoints.edgebit_format import save_checkpoint
from edgebit.training.corpus import split_documents
from edgebit.models.bitnet.model import BitNetConfig, BitNetForCausalLM

END_OF_TEXT = "<|endoftext|>"


def train_tokenizer(documents: list[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(documents, trainer)
    return tokenizer


def encode_documents(tokenizer: Tokenizer, documents: list[str]) -> torch.Tensor:
    """One long token stream, documents separated by the end-of-text token."""
    eot = tokenizer.token_to_id(END_OF_TEXT)
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(documents):
        ids.append(eot)
        ids.extend(encoding.ids)
    return torch.tensor(ids, dtype=torch.long)


def random_batch(stream: torch.Tensor, batch: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, stream.numel() - seq_len - 1, (batch,), generator=generator)
    return torch.stack([stream[s:s + seq_len + 1] for s in starts.tolist()])


@torch.no_grad()
def perplexity(model: BitNetForCausalLM, stream: torch.Tensor, seq_len: int, max_windows: int = 200) -> float:
    """Token-level perplexity over consecutive non-overlapping windows of the stream."""
    model.eval()
    total, count = 0.0, 0
    windows = min(max_windows, (stream.numel() - 1) // seq_len)
    for w in range(windows):
        chunk = stream[w * seq_len:(w + 1) * seq_len + 1]
        logits = model(chunk[None, :-1])
        total += F.cross_entropy(logits[0], chunk[1:], reduction="sum").item()
        count += seq_len
    return math.exp(total / count)


def train_step(model, optimizer, batch: torch.Tensor) -> torch.Tensor:
    """One next-token step on ``batch`` [B, T+1] (gradient clipped at 1.0); returns the loss."""
    logits = model(batch[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="folder made by scripts/fetch_corpus.sh")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--intermediate-size", type=int, default=704)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    train_docs, held_out_docs = split_documents(args.corpus)
    tokenizer = train_tokenizer(train_docs, args.vocab_size)
    train_stream = encode_documents(tokenizer, train_docs)
    held_out_stream = encode_documents(tokenizer, held_out_docs)
    print(f"tokens: train {train_stream.numel()}, held-out {held_out_stream.numel()}", flush=True)

    eot = tokenizer.token_to_id(END_OF_TEXT)
    config = BitNetConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=args.hidden_size,
                          intermediate_size=args.intermediate_size, num_hidden_layers=args.layers,
                          num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, hidden_act="relu2",
                          rope_theta=10000.0, max_position_embeddings=args.seq_len * 4, tie_word_embeddings=True,
                          bos_token_id=eot, eos_token_id=eot)
    model = BitNetForCausalLM(config)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0}],
                                  lr=args.lr, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(args.seed)
    start = time.time()
    for step in range(args.steps):
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup)
        loss = train_step(model, optimizer, random_batch(train_stream, args.batch, args.seq_len, generator))
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} lr {optimizer.param_groups[0]['lr']:.2e} "
                  f"{time.time() - start:.0f}s", flush=True)

    model.pack()
    held_out_ppl = perplexity(model, held_out_stream, args.seq_len)
    print(f"held-out perplexity (packed model): {held_out_ppl:.2f}", flush=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("corpus", "output")}
    training = {"command": "python -m edgebit.training.bitnet --corpus CORPUS -o OUT "
                           + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items()),
                "corpus": "Debian python3.11-doc reStructuredText sources (edgebit.training.corpus)",
                "train_tokens": int(train_stream.numel()), "held_out_tokens": int(held_out_stream.numel()),
                "steps": args.steps, "tokens_seen": args.steps * args.batch * args.seq_len,
                "held_out_perplexity": round(held_out_ppl, 3), "seconds": round(time.time() - start)}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_file = Path(tmp) / "tokenizer.json"
        tokenizer.save(str(tokenizer_file))
        save_checkpoint(model, args.output, tokenizer_file=tokenizer_file, extra={"training": training})
    print(json.dumps(training, indent=2))


if __name__ == "__main__":
    main()
