"""Text generation on the host with the KV cache: one prefill pass over the prompt, then one-token decode steps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from edgebit.errors import EdgebitError

TOKENIZER_FILE = "tokenizer.json"


def load_tokenizer(directory: Path) -> Tokenizer:
    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise EdgebitError(f"{directory}: no {TOKENIZER_FILE}; generation needs the model's tokenizer beside it "
                           "(or pass token ids with --ids)")
    return Tokenizer.from_file(str(path))


@dataclass
class Sampling:
    max_new_tokens: int = 40
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 40
    seed: int = 0


def _pick(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    if sampling.temperature <= 0:
        return int(logits.argmax())
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.numel():
        kth = torch.topk(logits, sampling.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))


@torch.no_grad()
def generate_ids(model, prompt_ids: list[int], sampling: Sampling, eos_id: int | None = None) -> list[int]:
    """New token ids after ``prompt_ids`` (prefill once, then decode with the cache)."""
    if not prompt_ids:
        raise EdgebitError("the prompt is empty; give at least one token of text")
    generator = torch.Generator().manual_seed(sampling.seed)
    cache = model.new_cache()
    logits = model(torch.tensor([prompt_ids]), cache)[0, -1]
    new: list[int] = []
    for _ in range(sampling.max_new_tokens):
        token = _pick(logits, sampling, generator)
        if token == eos_id:
            break
        new.append(token)
        logits = model(torch.tensor([[token]]), cache)[0, -1]
    return new


def generate_text(model, tokenizer: Tokenizer, prompt: str, sampling: Sampling) -> str:
    prompt_ids = tokenizer.encode(prompt).ids
    eos = getattr(model.config, "eos_token_id", None)
    return tokenizer.decode(generate_ids(model, prompt_ids, sampling, eos))
