"""Timing helper shared by the benchmarks: the median of repeated calls after a warm-up (shared, noisy machines)."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)
