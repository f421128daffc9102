"""How many runs one device takes at once (``cgbench bench --share N``): N processes, as a sweep's
children would be, each training its own copy of the step, started together and stepping for the
same wall time; their aggregate throughput in member-steps per second.

Each member builds the preset's method from its own seed on the default device (so on a machine
with several GPUs they all share the first), warms it up (CUDA graphs captured), waits for the
others, then times whole steps (batch, step, the device drained: as the training loop, which
reads the losses every ``log_every`` iterations) for ``seconds``. On a GPU whose method can
capture its step, every N is measured with CUDA graphs and without; ``nvidia-cuda-mps-control``,
started around the command, measures the same under CUDA MPS (``scripts/gpu_check.sh``).
"""

from __future__ import annotations

import os
import queue
import time
from multiprocessing import get_context
from typing import Any, Callable

from cgbench.config import Config

SHARE_SECONDS = 10.0
WARM_UP_STEPS = 3
START_TIMEOUT_S = 600.0  # spawning, importing, loading the data and capturing: a member later than this failed


def variants(config: Config, device) -> dict[str, str]:
    """The ways each N is measured: ``graphs`` and ``eager`` where the method can capture its step
    on this device (``cuda_graphs`` left at auto), else the one the config asks for."""
    from cgbench.methods import get_method
    from cgbench.speed import resolve_speed

    capturable = resolve_speed(config.replace(cuda_graphs="auto"), device, get_method(config.method).capabilities)
    if config.cuda_graphs == "auto" and capturable.cuda_graphs:
        return {"graphs": "on", "eager": "off"}
    return {"graphs" if config.cuda_graphs == "on" else "eager": config.cuda_graphs}


def share_throughput(config: Config, counts: tuple[int, ...], seconds: float, echo: Callable[[str], None],
                     ) -> dict[str, Any]:
    """For each N in ``counts``: every member's steps per second and their sum, per variant."""
    from cgbench.data import datasets
    from cgbench.devices import resolve_device

    datasets.resolve(config.data, config.image_size, echo=echo)  # made here once, if missing, not by each member
    ways = variants(config, resolve_device(config.device))
    runs: dict[str, Any] = {}
    for n in counts:
        threads = config.threads or max(1, (os.cpu_count() or 1) // n)  # as a sweep's children share the cores
        members = _run_members(config, n, ways, seconds, threads)
        runs[str(n)] = {"threads_each": threads, **{
            way: {"member_steps_per_s": sum(m[way] for m in members), "per_member": [m[way] for m in members]}
            for way in ways}}
        echo(f"  {n} run{'s' if n > 1 else ''} sharing the device ({threads} thread{'s' if threads > 1 else ''} "
             f"each): " + "; ".join(f"{way} {runs[str(n)][way]['member_steps_per_s']:.1f} member-steps/s" for way in ways))
    return {"seconds": seconds, "variants": ways, "runs": runs}


def _run_members(config: Config, n: int, ways: dict[str, str], seconds: float, threads: int) -> list[dict]:
    """Start ``n`` member processes, wait for each one's steps per second; a member that fails (or
    dies) fails the measurement (RuntimeError: not bad input, but a device or a bug to look at)."""
    context = get_context("spawn")
    start = context.Barrier(n)
    results = context.Queue()
    members = [context.Process(target=_member, args=(config, ways, seconds, threads, start, results), daemon=True)
               for _ in range(n)]
    for member in members:
        member.start()
    outcomes: list[dict] = []
    deadline = time.monotonic() + START_TIMEOUT_S + len(ways) * (seconds + START_TIMEOUT_S)
    try:
        while len(outcomes) < n:
            try:
                outcome = results.get(timeout=1.0)
            except queue.Empty:
                dead = [m.exitcode for m in members if m.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a member of --share {n} ended with status {dead[0]} before reporting") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the members of --share {n} took too long") from None
                continue
            if "error" in outcome:
                raise RuntimeError(f"a member of --share {n} failed: {outcome['error']}")
            outcomes.append(outcome)
    finally:
        for member in members:
            member.join(timeout=30)
            if member.is_alive():
                member.terminate()
    return outcomes


def _member(config: Config, ways: dict[str, str], seconds: float, threads: int, start, results) -> None:
    """One member (a spawned process): for each variant, build, warm up, wait for the others,
    step for ``seconds``; report steps per second per variant, or the error."""
    try:
        results.put(_measure_member(config, ways, seconds, threads, start))
    except BaseException as exc:  # noqa: BLE001 (reported to the parent, which fails the measurement)
        start.abort()  # the others stop waiting
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def _measure_member(config: Config, ways: dict[str, str], seconds: float, threads: int, start) -> dict[str, float]:
    import torch

    from cgbench.bench.paths import build
    from cgbench.data.sampler import PairedSampler, UnpairedSampler
    from cgbench.devices import resolve_device
    from cgbench.timing import sync
    from cgbench.training import load_training_data

    torch.set_num_threads(threads)
    device = resolve_device(config.device)
    data = load_training_data(config, echo=lambda *_: None)
    rates = {}
    for way, cuda_graphs in ways.items():
        method = build(config.replace(cuda_graphs=cuda_graphs), device)
        sampler = (PairedSampler if method.paired else UnpairedSampler)(
            data.labels_rgb, data.photos, config.image_size, config.batch_size, config.seed, config.flip,
            config.disjoint)
        with method.halves.pinned_threads():
            for step in range(WARM_UP_STEPS):
                method.train_step(*sampler.batch(step, device))
            sync(device)
            start.wait(timeout=START_TIMEOUT_S)
            began, steps = time.perf_counter(), 0
            while time.perf_counter() - began < seconds:
                method.train_step(*sampler.batch(WARM_UP_STEPS + steps, device))
                sync(device)
                steps += 1
            rates[way] = steps / (time.perf_counter() - began)
        del method
    return rates
