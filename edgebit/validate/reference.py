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


NOISE_SEEDS = 8


def rounding_noise(model, input_ids: np.ndarray, logits: np.ndarray, seeds: int = NOISE_SEEDS) -> float:
    """How far ``model``'s logits of ``input_ids`` move (max abs, over ``seeds`` draws) when every input of its
    linear layers moves by at most one float32 ulp: the spread two correct implementations summing in different
    orders show, since a one-ulp change can flip an int8 activation code or a float16 cache entry, and the flip
    carries to every later position (edgebit.validate.agreement)."""
    generator = torch.Generator().manual_seed(0)

    def nudge(module, args):
        x = args[0]
        if not torch.is_tensor(x) or not x.is_floating_point():
            return None
        step = torch.randint(-1, 2, x.shape, generator=generator).to(x.dtype) * torch.finfo(torch.float32).eps / 2
        return (x * (1 + step), *args[1:])

    layers = [m for m in model.modules() if hasattr(m, "in_features") and not list(m.children())]
    noise = 0.0
    for _ in range(seeds):
        hooks = [layer.register_forward_pre_hook(nudge) for layer in layers]
        try:
            noise = max(noise, float(np.abs(host_logits(model, input_ids) - logits).max()))
        finally:
            for hook in hooks:
                hook.remove()
    return noise
