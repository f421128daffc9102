"""What ``cgbench bench`` adds on a GPU: the step with and without CUDA graphs (alternating blocks,
as fast against plain), the GPU's busy fraction, and the compute floor from the GPU's measured
fp32 and TF32 peaks.

The busy fraction is the time the GPU spends in kernels and memory copies (the union of their
intervals in a ``torch.profiler`` trace of CUDA activity only, read from its chrome trace) over
the host's wall time of the same steps, fed batches made beforehand. The profiler's own cost
lowers it a little; a step that keeps the GPU busy reads close to 1, a launch-bound one far below.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from cgbench.bench.floor import matmul_throughput
from cgbench.bench.paths import alternate, build, warm_up
from cgbench.config import Config
from cgbench.errors import ConfigError
from cgbench.timing import Spread
from cgbench.timing import sync as _sync

#: The chrome-trace categories of work on the GPU (what keeps it busy).
DEVICE_WORK = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})
BUSY_STEPS = 20


def gpu_figures(config: Config, sampler, device: torch.device, iters: int, first_step: int, flops: int,
                echo: Callable[[str], None]) -> dict[str, Any]:
    """The step with and without CUDA graphs (each path's busy fraction with it), the TF32
    switches the step ran with, the measured matmul peaks and the floors they give the step."""
    peaks = {"fp32": _matmul_peak(device, tf32=False), "tf32": _matmul_peak(device, tf32=True)}
    figures: dict[str, Any] = {
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        "peak_flops_per_s": peaks,
        "floor_s": {precision: flops / peak for precision, peak in peaks.items()},
        "busy_method": f"torch.profiler (CUDA activity): union of {', '.join(sorted(DEVICE_WORK))} intervals "
                       f"over the host's wall time of {BUSY_STEPS} steps",
    }
    figures["graphs"] = graphs_on_and_off(config, sampler, device, iters, first_step, echo)
    return figures


def graphs_on_and_off(config: Config, sampler, device: torch.device, iters: int, first_step: int,
                      echo: Callable[[str], None]) -> dict[str, Any]:
    """The fast path with CUDA graphs against the fast path without, from one seed, in alternating
    blocks on the same batches; and each one's busy fraction."""
    try:
        graphed = build(config.replace(cuda_graphs="on"), device)
    except ConfigError as exc:  # e.g. compile_mode set: the graphs are torch.compile's
        return {"skipped": str(exc)}
    if not graphed.speed.cuda_graphs:
        return {"skipped": f"method {config.method!r} does not declare a graph-safe step"}
    eager = build(config.replace(cuda_graphs="off"), device)
    warm_up(graphed, eager, sampler, device, first_step)
    on_s, off_s, _, block_ratios = alternate(graphed, eager, sampler, device, iters, first_step)
    echo(f"  timed {len(on_s)} steps with CUDA graphs and {len(off_s)} without; measuring the GPU's busy fraction")
    return {
        "on": dataclasses.asdict(Spread.of(on_s)),
        "off": dataclasses.asdict(Spread.of(off_s)),
        "ratio": statistics.median(block_ratios),  # of (off / on) over adjacent block pairs
        "busy": {"on": busy_fraction(graphed, sampler, device, first_step + iters),
                 "off": busy_fraction(eager, sampler, device, first_step + iters)},
    }


def _matmul_peak(device: torch.device, tf32: bool) -> float:
    """FLOP/s of large fp32 matmuls, with TF32 tensor cores allowed or not (put back after)."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        return matmul_throughput(device, torch.float32)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def busy_fraction(method, sampler, device: torch.device, first_step: int, steps: int = BUSY_STEPS) -> dict[str, Any]:
    """The share of the wall time of ``steps`` training steps that the GPU spends working. A
    profiler that fails here (no CUPTI, say) gives its error instead of the figure."""
    from torch.profiler import ProfilerActivity, profile

    batches = [sampler.batch(first_step + i, device) for i in range(steps)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            trace = Path(tmp) / "trace.json"
            _sync(device)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                start = time.perf_counter()
                for x, y in batches:
                    method.train_step(x, y)
                _sync(device)
                wall = time.perf_counter() - start
            prof.export_chrome_trace(str(trace))
            busy, events = busy_seconds(json.loads(trace.read_text()))
    except Exception as exc:  # noqa: BLE001 (a figure that could not be taken, not a failed benchmark)
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"fraction": busy / wall, "busy_s_per_step": busy / steps, "wall_s_per_step": wall / steps,
            "device_events": events}


def busy_seconds(trace: dict[str, Any], categories: frozenset[str] = DEVICE_WORK) -> tuple[float, int]:
    """Seconds covered by the union of a chrome trace's complete events of ``categories`` (work
    on different streams may overlap: it counts once), and how many such events there were."""
    spans = sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0.0))) for e in trace.get("traceEvents", [])
                   if e.get("ph") == "X" and e.get("cat") in categories)
    covered, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop > end:
            covered += stop - max(start, end)
            end = stop
    return covered * 1e-6, len(spans)  # chrome traces count microseconds
