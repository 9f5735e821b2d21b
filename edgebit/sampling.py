"""Next-token sampling, defined once for the host and the device runners (runtimes/runner_driver.h's Sampler
implements the same steps), so the same seed and settings pick the same tokens everywhere.

One pick, from float32 logits ``x`` over the vocabulary, in float64:

1. repetition penalty ``r`` (CTRL / Hugging Face): for each distinct token already seen (prompt and generated),
   ``x[t] / r`` if ``x[t] > 0`` else ``x[t] * r``;
2. temperature 0: the first index of the maximum (greedy); else ``x / temperature``;
3. order the tokens by ``x`` descending, ties by index; keep the first ``top_k`` (0: all);
4. ``p = exp(x - max)``; keep the shortest prefix whose cumulative ``p / sum(p)`` reaches ``top_p`` (1: all);
5. draw ``u`` in [0, 1) from SplitMix64 (seeded; one draw per pick: the 53 high bits of the next output), scale it
   by the kept mass and take the first token whose running sum of ``p`` exceeds it.

Sums run front to back (``np.cumsum`` here, a loop in C++) so both sides round alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgebit.errors import EdgebitError

MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 40
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 40  # 0 = the whole vocabulary
    seed: int = 0
    top_p: float = 1.0  # nucleus: 1 = off
    repetition_penalty: float = 1.0  # 1 = off

    def __post_init__(self):
        checks = [(self.max_new_tokens >= 1, "--max-new-tokens must be at least 1"),
                  (0 <= self.temperature <= 100, "--temperature must be in [0, 100]"),
                  (self.top_k >= 0, "--top-k must be 0 (off) or positive"),
                  (0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
                  (0 < self.repetition_penalty <= 100, "--repetition-penalty must be in (0, 100]"),
                  (0 <= self.seed < 2**63, "--seed must be in [0, 2^63)")]
        for ok, message in checks:
            if not ok:
                raise EdgebitError(message)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def runner_args(self) -> list[str]:
        """The device runner's generate options for these settings."""
        return ["--temperature", repr(float(self.temperature)), "--top-k", str(self.top_k),
                "--top-p", repr(float(self.top_p)), "--repetition-penalty", repr(float(self.repetition_penalty)),
                "--seed", str(self.seed)]


class SplitMix64:
    """Steele, Lea and Flood's SplitMix64: tiny, seedable, and the same on every machine."""

    def __init__(self, seed: int):
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def uniform(self) -> float:
        return (self.next() >> 11) * 2.0**-53


def pick(logits, sampling: Sampling, rng: SplitMix64, seen: list[int] | None = None) -> int:
    """The next token from ``logits`` [V] (see the module docstring for the steps)."""
    x = np.asarray(logits, dtype=np.float32).astype(np.float64)
    if sampling.repetition_penalty != 1.0 and seen:
        tokens = np.unique(np.asarray(seen, dtype=np.int64))
        values = x[tokens]
        x[tokens] = np.where(values > 0, values / sampling.repetition_penalty, values * sampling.repetition_penalty)
    if sampling.greedy:
        return int(np.argmax(x))
    x = x / sampling.temperature
    order = np.lexsort((np.arange(x.size), -x))  # x descending, ties by index
    if 0 < sampling.top_k < x.size:
        order = order[:sampling.top_k]
    p = np.exp(x[order] - x[order[0]])
    running = np.cumsum(p)
    kept = p.size
    if sampling.top_p < 1.0:
        reached = np.nonzero(np.cumsum(p / running[-1]) >= sampling.top_p)[0]
        kept = int(reached[0]) + 1 if reached.size else p.size
    u = rng.uniform() * running[kept - 1]
    return int(order[min(int(np.searchsorted(running[:kept], u, side="right")), kept - 1)])
