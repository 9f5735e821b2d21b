"""Reference vectors: a few input sequences and the logits host PyTorch computes for them.

They travel inside the bundle so any device can be checked against the host, with the same comparison code
(edgebit.validate.agreement) wherever it runs.
"""

from __future__ import annotations

import numpy as np
import torch

REFERENCE_TEXTS = (
    "The Python interpreter reads a line of text and executes it.",
    "A list is a mutable sequence of items, and a tuple is an immutable one.",
    "If the file does not exist, the function raises an exception.",
)
RANDOM_SEQUENCES = 3
RANDOM_LENGTH = 16


def reference_inputs(vocab_size: int, tokenizer=None, length: int | None = None) -> np.ndarray:
    """int64 [B, T]: tokenized sentences when a tokenizer is given, else seeded random ids (same T for all rows)."""
    if tokenizer is not None:
        rows = [tokenizer.encode(text).ids for text in REFERENCE_TEXTS]
        t = min(len(r) for r in rows) if length is None else length
        return np.array([r[:t] for r in rows], dtype=np.int64)
    rng = np.random.default_rng(0)
    return rng.integers(0, vocab_size, (RANDOM_SEQUENCES, length or RANDOM_LENGTH), dtype=np.int64)


@torch.no_grad()
def host_logits(model, input_ids: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(input_ids)).float().numpy()


def perplexity(logits: np.ndarray, input_ids: np.ndarray) -> float:
    """Next-token perplexity of ``input_ids`` under ``logits`` [B, T, V] (positions 0..T-2 predict 1..T-1)."""
    x = logits[:, :-1].astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    log_probs = x - np.log(np.exp(x).sum(-1, keepdims=True))
    targets = input_ids[:, 1:]
    picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    return float(np.exp(-picked.mean()))
