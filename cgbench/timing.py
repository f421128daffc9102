"""Timing on any device: wall seconds with the device's queue drained, medians, spreads, and how a
duration reads.

Shared by ``cgbench bench`` and the evaluators' micro-benchmarks (``python -m evaluators.bench_*``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA runs asynchronously; the CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one call of ``fn``, with the device's queue drained before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1,
                   device: torch.device = torch.device("cpu")) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return statistics.median(seconds(fn, device) for _ in range(repeats))


@dataclass
class Spread:
    """Median and 10th/90th percentiles of a list of seconds."""

    median: float
    p10: float
    p90: float
    n: int

    @classmethod
    def of(cls, seconds: list[float]) -> Spread:
        if not seconds:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        s = sorted(seconds)
        pick = lambda q: s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]  # noqa: E731
        return cls(statistics.median(s), pick(0.1), pick(0.9), len(s))


def ms(seconds: float) -> str:
    """A duration as people read it: milliseconds below 10 s, else seconds."""
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"
