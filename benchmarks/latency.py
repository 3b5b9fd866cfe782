"""Latency comparisons the benchmarks run in a child process (``tflm_ext.run_isolated``).

A module of its own because a child process imports the function it runs by module name,
and a benchmark script is ``__main__``, which the child never imports.
"""

from __future__ import annotations

import statistics

import numpy as np

from tflm_ext.inference import run_batch

LATENCY_ROUNDS = 5


def paired_latency_ratio(
    original: bytes, rewritten: bytes, features: np.ndarray, rounds: int = LATENCY_ROUNDS
) -> float:
    """Rewritten over original median invoke time, measured in alternating rounds in one
    process (run it in a child) and the median ratio taken, so that load and clock changes
    on a shared machine hit both models alike."""
    ratios = []
    for _ in range(rounds):
        before = statistics.median(run_batch(original, features).latency_ms)
        after = statistics.median(run_batch(rewritten, features).latency_ms)
        ratios.append(after / before)
    return statistics.median(ratios)
