"""Two ways of computing one step (the fast and the plain path; on a GPU also with and without CUDA
graphs), built from one seed and timed against each other in alternating blocks on the same
batches, so that a noisy machine slows both alike; and the instruments that split a step's time
into its parts."""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterator

import torch

from cgbench.config import Config
from cgbench.speed import accelerate
from cgbench.timing import seconds
from cgbench.timing import sync as _sync

BLOCK = 5  # timed steps of one path before switching to the other
#: The part of a captured step that is neither the data wait nor the image pool: the two graph
#: replays, whose forward, backward and optimiser cannot be told apart from the host.
REPLAYS = "graph replays (forward + backward + optimizer)"


class Stopwatch:
    """Accumulates seconds per part within one step; ``lap()`` returns and resets them."""

    def __init__(self, device: torch.device):
        self.device = device
        self.parts: dict[str, float] = {}
        self._open: dict[str, float] = {}

    def start(self, part: str) -> None:
        _sync(self.device)
        self._open[part] = time.perf_counter()

    def stop(self, part: str) -> None:
        _sync(self.device)
        self.parts[part] = self.parts.get(part, 0.0) + time.perf_counter() - self._open.pop(part)

    @contextmanager
    def measure(self, part: str) -> Iterator[None]:
        self.start(part)
        try:
            yield
        finally:
            self.stop(part)

    def lap(self) -> dict[str, float]:
        parts, self.parts = self.parts, {}
        return parts


def instrument(method, watch: Stopwatch) -> Callable[[], None]:
    """Time the optimiser steps (hooks) and the image pools (a timed ``query``) of ``method``;
    returns the function that removes the instruments. (A captured step's optimiser runs inside
    its graph, where no hook fires: install these after the step was captured.)"""
    handles = []
    for optimizer in method.optimizers.values():
        handles.append(optimizer.register_step_pre_hook(lambda *_: watch.start("optimizer")))
        handles.append(optimizer.register_step_post_hook(lambda *_: watch.stop("optimizer")))
    for pool in method.pools.values():
        query = pool.query

        def timed(images, query=query):
            with watch.measure("image pool"):
                return query(images)

        pool.query = timed

    def remove() -> None:
        for handle in handles:
            handle.remove()
        for pool in method.pools.values():
            pool.__dict__.pop("query", None)

    return remove


def build(config: Config, device: torch.device):
    """The method of ``config``, seeded, with its speed settings applied, in training mode."""
    from cgbench.methods import get_method

    torch.manual_seed(config.seed)
    method = get_method(config.method)(config, device)
    accelerate(method)
    method.train(True)
    return method


def warm_up(first, second, sampler, device: torch.device, steps: int) -> float:
    """``steps`` steps of both paths (torch.compile's compilation and CUDA graph capture among
    them, if on); the second path's last step time, which sizes the run when no iteration count
    is given."""
    last = float("nan")
    for step in range(max(steps, 1)):
        x, y = sampler.batch(step, device)
        with first.halves.pinned_threads():
            first.train_step(x, y)
        last = seconds(partial(second.train_step, x, y), device)
    return last


def alternate(first, second, sampler, device: torch.device, iters: int, first_step: int,
              watch: Stopwatch | None = None):
    """Per-step seconds of the ``first`` and the ``second`` path, the first path's per-part laps
    (when ``watch`` times it), and each block's ratio of medians (second / first). Blocks of
    BLOCK steps, first and second in turn, on the same batches: the thread count changes only
    between blocks (see speed.Halves), and a noisy machine slows both alike."""
    first_s, second_s, laps, block_ratios = [], [], [], []
    rest = REPLAYS if first.speed.cuda_graphs else "forward + backward"
    step = first_step
    while len(second_s) < iters:
        n = min(BLOCK, iters - len(first_s))
        batches, data_wait = [], []
        for i in range(n):
            data_wait.append(seconds(lambda: batches.append(sampler.batch(step + i, device)), device))
        with first.halves.pinned_threads():
            for (x, y), wait in zip(batches, data_wait):
                first_s.append(seconds(partial(first.train_step, x, y), device))
                if watch is not None:
                    lap = {"data wait": wait, **watch.lap()}
                    lap[rest] = first_s[-1] - lap.get("optimizer", 0.0) - lap.get("image pool", 0.0)
                    laps.append(lap)
        for x, y in batches:
            second_s.append(seconds(partial(second.train_step, x, y), device))
        block_ratios.append(statistics.median(second_s[-n:]) / statistics.median(first_s[-n:]))
        step += n
    return first_s, second_s, laps, block_ratios
