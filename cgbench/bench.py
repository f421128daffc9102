"""``cgbench bench``: where a training step's time goes, and how fast it is against two yardsticks.

For each preset the command builds the method twice from one seed: the *fast* step (the speed
settings the run would use, :mod:`cgbench.speed`) and the *plain* step (eager fp32, NCHW,
per-parameter Adam, one backward: :data:`cgbench.speed.PLAIN_SETTINGS`). It then

* times both on the same batches, in alternating blocks of a few steps, so a noisy machine
  slows both alike; it reports medians and the 10th-90th percentile spread of each, and their
  ratio as the median over adjacent block pairs of (plain block median / fast block median),
  which pairs steps taken seconds apart and so resists drift in the machine's speed;
* splits the fast step into data wait, forward + backward, optimiser and image pool
  (optimiser hooks and a timed pool), and measures tracking with the real training loop
  (:func:`cgbench.training.train` into a throwaway MLflow store);
* counts the step's FLOPs (``torch.utils.flop_counter``) and measures the step's compute floor:
  every distinct convolution of the step (forward and backward, as aten runs them) timed alone
  at its best (memory format, thread count), weighted by how often the step runs it
  (:func:`compute_floor`). No step can beat it, so the step's share of the floor (floor / step
  time, at most 1) says how close the step comes to its own kernels at their best. A large
  matmul's throughput is kept as a reference figure only: convolutions can run faster than it;
* reports peak memory (RSS; and CUDA memory on a GPU);
* times evaluation through the real path (:func:`cgbench.scoring.stream` with the ``fcn``
  evaluator): images per second through G and the FCN (an untrained FCN of the preset's
  architecture: same cost as a trained one), and the confusion-matrix update in megapixels/s.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import resource
import statistics
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from cgbench.config import Config
from cgbench.speed import PLAIN_SETTINGS, accelerate
from cgbench.timing import Spread, median_seconds, seconds
from cgbench.timing import sync as _sync


BLOCK = 5  # timed steps of one path before switching to the other
BUDGET_S, MIN_ITERS, MAX_ITERS = 20.0, 10, 100  # default number of timed steps per path

# --- measuring ------------------------------------------------------------------------------


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
    returns the function that removes the instruments."""
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


def matmul_throughput(device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 5,
                      sizes: tuple[int, ...] | None = None) -> float:
    """FLOP/s of square matmuls: the best, over a few sizes, of the median of ``repeats`` runs
    (a reference figure: the step's convolutions may run faster or slower than a large matmul)."""
    sizes = sizes or ((1024, 2048, 3072) if device.type == "cpu" else (4096, 8192))
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        best = max(best, 2 * n**3 / median_seconds(lambda: torch.mm(a, b, out=out), repeats, device=device))
    return best


def step_flops(method, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one training step (forward and backward matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        method.train_step(x, y)
    return int(counter.get_total_flops())


# --- the compute floor: the step's own convolutions, each timed alone at its best -----------------


@dataclass(frozen=True)
class Convolution:
    """One convolution kernel call of a step as aten runs it: the forward pass, or the backward
    pass with the gradients it computes (``mask``: input, weight, bias)."""

    backward: bool
    input: tuple[int, ...]
    weight: tuple[int, ...]
    output: tuple[int, ...]
    bias: tuple[int, ...] | None  # the forward's bias shape; the backward's bias_sizes
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    transposed: bool
    output_padding: tuple[int, ...]
    groups: int
    mask: tuple[bool, bool, bool]
    dtype: torch.dtype

    def run(self, tensors: dict[str, torch.Tensor]) -> None:
        geometry = (self.stride, self.padding, self.dilation, self.transposed, self.output_padding, self.groups)
        if self.backward:
            bias_sizes = list(self.bias) if self.bias is not None else None
            torch.ops.aten.convolution_backward(tensors["grad_output"], tensors["input"], tensors["weight"],
                                                bias_sizes, *geometry, list(self.mask))
        else:
            torch.ops.aten.convolution(tensors["input"], tensors["weight"], tensors.get("bias"), *geometry)


def record_convolutions(method, x: torch.Tensor, y: torch.Tensor) -> Counter[Convolution]:
    """Every convolution kernel call of one training step of ``method`` (forward and backward),
    counted by shape. (Torch's dispatch modes are per thread: record a step that runs on one.)"""
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    calls: Counter[Convolution] = Counter()

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is aten.convolution.default:
                inp, weight, bias, *geometry = args
                bias = tuple(bias.shape) if bias is not None else None
                calls[_convolution(False, inp, weight, out.shape, bias, geometry, (False,) * 3)] += 1
            elif func is aten.convolution_backward.default:
                grad_output, inp, weight, bias_sizes, *geometry, mask = args
                bias = tuple(bias_sizes) if bias_sizes is not None else None
                calls[_convolution(True, inp, weight, grad_output.shape, bias, geometry, mask)] += 1
            return out

    with Recorder():
        method.train_step(x, y)
    return calls


def _convolution(backward, inp, weight, output, bias, geometry, mask) -> Convolution:
    stride, padding, dilation, transposed, output_padding, groups = geometry
    return Convolution(backward, tuple(inp.shape), tuple(weight.shape), tuple(output), bias, tuple(stride),
                       tuple(padding), tuple(dilation), bool(transposed), tuple(output_padding), int(groups),
                       tuple(bool(m) for m in mask), inp.dtype)


def convolution_seconds(conv: Convolution, device: torch.device, rounds: int = 3) -> float:
    """The least machine time ``conv`` takes alone: the best, over memory formats (NCHW, NHWC)
    and, on a CPU, over thread counts (all, half, one), of its fastest call, in seconds of the
    whole machine (a call on t of n threads leaves the rest free: it counts t/n of its time)."""
    threads = torch.get_num_threads()
    counts = sorted({threads, max(1, threads // 2), 1}) if device.type == "cpu" else [threads]
    calls = 1 if device.type == "cpu" else 10  # on a GPU, calls queue back to back as in a step
    g = torch.Generator().manual_seed(0)
    make = lambda shape: torch.randn(shape, generator=g).to(device, conv.dtype)  # noqa: E731
    base = {"input": make(conv.input), "weight": make(conv.weight), "grad_output": make(conv.output)}
    if conv.bias is not None and not conv.backward:
        base["bias"] = make(conv.bias)
    formats = [torch.contiguous_format] + ([torch.channels_last] if len(conv.input) == 4 else [])
    best = math.inf
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # cudnn's fastest algorithm for the shape
    try:
        for fmt in formats:
            tensors = {k: v.contiguous(memory_format=fmt) if v.dim() == 4 else v for k, v in base.items()}
            for n in counts:
                torch.set_num_threads(n)
                conv.run(tensors)  # oneDNN primitive creation, cudnn autotuning
                fastest = min(seconds(lambda: [conv.run(tensors) for _ in range(calls)], device)
                              for _ in range(rounds)) / calls
                best = min(best, fastest * n / threads)
    finally:
        torch.backends.cudnn.benchmark = benchmark
        torch.set_num_threads(threads)
    return best


def convolution_floor(calls: Counter[Convolution], device: torch.device,
                      cache: dict[Convolution, float] | None = None) -> float:
    """Seconds the step's convolutions need at least: each distinct call's least machine time
    (:func:`convolution_seconds`, shared through ``cache``) times how often the step makes it."""
    cache = {} if cache is None else cache
    for conv in calls:
        if conv not in cache:
            cache[conv] = convolution_seconds(conv, device)
    return sum(count * cache[conv] for conv, count in calls.items())


def compute_floor(config: Config, device: torch.device, plain, x: torch.Tensor, y: torch.Tensor,
                  fastest_step: float, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The least time a step of ``config`` can take: its convolutions, each timed alone at its best
    (:func:`convolution_floor`), for the fast path and the plain one (they may run different
    kernels: the fast path decomposes the last layers, batches the discriminator, may use bf16);
    the floor is the lower of the two, so it bounds both.

    Every convolution of a step runs at best as fast as it does alone, and a step does more than
    its convolutions, so no step can beat the floor. A measured step faster than the floor
    (``fastest_step``) means the machine was slower while the floor was measured than during
    that step: the floor is then capped at that step, marked ``capped``, and a warning printed."""
    # the fast step's convolutions, recorded in eager mode on one thread (dispatch modes are per thread)
    fast_kernels = _build(config.replace(parallel_halves="off", compile_mode="off"), device)
    calls = {"fast": record_convolutions(fast_kernels, x, y), "plain": record_convolutions(plain, x, y)}
    cache: dict[Convolution, float] = {}
    by_path = {path: convolution_floor(c, device, cache) for path, c in calls.items()}
    floor_s = min(by_path.values())
    capped = floor_s > fastest_step
    if capped:
        echo(f"  warning: the convolutions timed alone ({_ms(floor_s)}) were slower than the fastest step "
             f"({_ms(fastest_step)}): the machine's speed changed while measuring; the floor is capped at that step")
        floor_s = fastest_step
    return {"seconds": floor_s, "by_path": by_path, "capped": capped, "distinct_convolutions": len(cache),
            "convolution_calls": {path: sum(c.values()) for path, c in calls.items()}}


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


# --- one preset -----------------------------------------------------------------------------


@dataclass
class PresetResult:
    preset: str
    config: dict[str, Any]
    device: str
    threads: int
    speed: dict[str, Any]
    fast: Spread
    plain: Spread
    ratio: float  # median over adjacent (fast, plain) blocks of plain block median / fast block median
    ratio_of_medians: float  # median plain / median fast over all steps
    breakdown: dict[str, float]  # median seconds per fast step
    tracking: dict[str, float]
    flops: int
    matmul_flops_per_s: float  # a reference figure only: the floor is measured from the step itself
    floor_s: float  # the step's convolutions at their best (:func:`compute_floor`): no step beats it
    floor: dict[str, Any]  # how: per path, distinct convolutions, kernel calls, whether it was capped
    floor_share: float  # of the fast step
    floor_share_plain: float
    peak_rss_bytes: int
    peak_rss_scope: str  # "preset" (reset before it) or "process" (where the peak cannot be reset)
    cuda_peak_bytes: int | None
    eval: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(config: Config, device: torch.device):
    from cgbench.methods import get_method

    torch.manual_seed(config.seed)
    method = get_method(config.method)(config, device)
    accelerate(method)
    method.train(True)
    return method


def bench_preset(
    config: Config,
    preset: str,
    iters: int | None = None,
    warmup: int = 3,
    tracking_iters: int | None = 0,
    with_eval: bool = True,
    echo: Callable[[str], None] = print,
    tracking_store: str | None = None,
) -> PresetResult:
    """Every figure of ``cgbench bench`` for one preset; ``tracking_store``: the MLflow store the
    tracking figure writes to (default: a throwaway sqlite file)."""
    from cgbench.devices import resolve_device

    device = resolve_device(config.device)
    threads_before = torch.get_num_threads()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    try:
        return _bench_preset(config, preset, device, iters, warmup, (tracking_iters, tracking_store), with_eval,
                             echo)
    finally:
        torch.set_num_threads(threads_before)


def _bench_preset(config: Config, preset: str, device: torch.device, iters: int | None, warmup: int,
                  tracking: tuple[int | None, str | None],
                  with_eval: bool, echo: Callable[[str], None]) -> PresetResult:
    from cgbench.data.sampler import PairedSampler, UnpairedSampler
    from cgbench.training import load_training_data

    tracking_iters, tracking_store = tracking
    threads = torch.get_num_threads()
    data = load_training_data(config, echo=echo)
    rss_reset = reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    fast = _build(config, device)
    plain = _build(config.replace(**PLAIN_SETTINGS), device)
    sampler = (PairedSampler if fast.paired else UnpairedSampler)(
        data.labels_rgb, data.photos, config.image_size, config.batch_size, config.seed, config.flip, config.disjoint
    )
    echo(f"[{preset}] {config.method}/{config.ablation} at {config.image_size} px, ngf {config.ngf}, "
         f"{config.n_blocks} blocks, batch {config.batch_size}; {device.type}, {threads} threads; "
         f"fast path: {fast.speed.describe()}")

    plain_step = _warm_up(fast, plain, sampler, device, warmup)
    if iters is None:  # as many as fit in the budget: noisy machines need many cheap steps
        iters = int(min(MAX_ITERS, max(MIN_ITERS, BUDGET_S / plain_step)))
    if tracking_iters is None:
        tracking_iters = iters
    fast_s, plain_s, laps, block_ratios = _time_in_blocks(fast, plain, sampler, device, iters, first_step=warmup)

    parts = ("data wait", "forward + backward", "optimizer", "image pool")
    breakdown = {p: statistics.median(lap.get(p, 0.0) for lap in laps) for p in parts} if laps else {}
    x, y = sampler.batch(0, device)
    flops = step_flops(plain, x, y)
    floor = compute_floor(config, device, plain, x, y, fastest_step=min(fast_s + plain_s), echo=echo)
    throughput = matmul_throughput(device, torch.bfloat16 if fast.speed.amp == "bf16" else torch.float32)
    fast_spread, plain_spread = Spread.of(fast_s), Spread.of(plain_s)
    peak = peak_rss_bytes()
    cuda_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    speed = dataclasses.asdict(fast.speed)
    del fast, plain

    tracking = measure_tracking(config, preset, tracking_iters, tracking_store) if tracking_iters > 0 else {}
    if tracking:
        breakdown["tracking"] = tracking["seconds_per_iter"]
    result = PresetResult(
        preset=preset, config=config.to_dict(), device=str(device), threads=threads,
        speed=speed,
        fast=fast_spread, plain=plain_spread, ratio=statistics.median(block_ratios),
        ratio_of_medians=plain_spread.median / fast_spread.median,
        breakdown=breakdown, tracking=tracking, flops=flops, matmul_flops_per_s=throughput,
        floor_s=floor["seconds"], floor=floor,
        floor_share=floor["seconds"] / fast_spread.median, floor_share_plain=floor["seconds"] / plain_spread.median,
        peak_rss_bytes=peak, peak_rss_scope="preset" if rss_reset else "process", cuda_peak_bytes=cuda_peak,
    )
    if with_eval:
        result.eval = bench_eval(config, device, data.ref.root)
    return result


def _warm_up(fast, plain, sampler, device: torch.device, warmup: int) -> float:
    """``warmup`` steps of both paths (torch.compile's compilation among them, if on); the plain
    path's last step time, which sizes the run when no iteration count is given."""
    plain_step = float("nan")
    for step in range(max(warmup, 1)):
        x, y = sampler.batch(step, device)
        with fast.halves.pinned_threads():
            fast.train_step(x, y)
        plain_step = seconds(partial(plain.train_step, x, y), device)
    return plain_step


def _time_in_blocks(fast, plain, sampler, device: torch.device, iters: int, first_step: int):
    """Per-step seconds of the fast and the plain path, the fast path's per-part laps, and each
    block's ratio of medians. Blocks of BLOCK steps, fast and plain in turn, on the same batches:
    the thread count changes only between blocks (see speed.Halves), and a noisy machine slows both alike."""
    watch = Stopwatch(device)
    remove = instrument(fast, watch)
    fast_s, plain_s, laps, block_ratios = [], [], [], []
    try:
        step = first_step
        while len(plain_s) < iters:
            n = min(BLOCK, iters - len(fast_s))
            batches, data_wait = [], []
            for i in range(n):
                data_wait.append(seconds(lambda: batches.append(sampler.batch(step + i, device)), device))
            with fast.halves.pinned_threads():
                for (x, y), wait in zip(batches, data_wait):
                    fast_s.append(seconds(partial(fast.train_step, x, y), device))
                    lap = {"data wait": wait, **watch.lap()}
                    lap["forward + backward"] = fast_s[-1] - lap.get("optimizer", 0.0) - lap.get("image pool", 0.0)
                    laps.append(lap)
            for x, y in batches:
                plain_s.append(seconds(partial(plain.train_step, x, y), device))
            block_ratios.append(statistics.median(plain_s[-n:]) / statistics.median(fast_s[-n:]))
            step += n
    finally:
        remove()
    return fast_s, plain_s, laps, block_ratios


def measure_tracking(config: Config, preset: str, iters: int, store: str | None = None) -> dict[str, float]:
    """Tracking's share of the real training loop: ``iters`` iterations of :func:`cgbench.training.train`
    into ``store`` (default: a throwaway sqlite store), with the preset's logging cadence and one
    checkpoint at the end."""
    from cgbench.training import train

    run_config = config.replace(iters=iters, checkpoint_every=max(iters, 1), sample_every=0)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(run_config, tracking_uri=store or f"sqlite:///{tmp}/bench.db", experiment="cgbench-bench",
                       preset=preset, progress=False, echo=lambda *_: None)
    checkpoint_share = result.checkpoint_seconds / (config.checkpoint_every * result.sec_per_iter)
    return {
        "iterations": iters,
        "sec_per_iter": result.sec_per_iter,
        "share": result.log_fraction,  # of the loop; the one flush is amortised over `iters` only: an upper bound
        "seconds_per_iter": result.log_fraction * result.sec_per_iter,
        "data_share": result.data_fraction,
        "checkpoint_seconds": result.checkpoint_seconds,
        "checkpoint_share": checkpoint_share,  # one checkpoint every `checkpoint_every` iterations
    }


def bench_eval(config: Config, device: torch.device, root: Path, max_images: int = 64, batch_size: int = 8,
               ) -> dict[str, float]:
    """Evaluation through the real streaming path: G then the FCN, and the confusion update."""
    from cgbench.methods import get_method
    from cgbench.models.segmenter import build_segmenter
    from cgbench.scoring import evaluator, load_val_split, stream
    from evaluators.base import EvalContext, Segmenter
    from evaluators.confusion import ConfusionMatrix

    FCNScore = evaluator("fcn")  # the built-in, found through the entry points as any plugin is

    split = load_val_split(root, config.image_size, config.prep)
    n = min(max_images, len(split.labels))
    split = split.head(n)
    torch.manual_seed(config.seed)
    method = get_method(config.method)(config, device)
    method.train(False)
    model = build_segmenter(config.fcn_arch, width=config.fcn_width).to(device).eval()
    segmenter = Segmenter(model, "untrained (bench)", image_size=config.image_size)
    context = EvalContext(split, config.image_size, device, batch_size, 0, loaders={"fcn": lambda: segmenter})
    translate = {"labels2photo": lambda x, _: method.labels_to_photo(x)}
    stream([FCNScore(context)], context, translate, progress=False)  # warm-up
    stats = stream([FCNScore(context)], context, translate, progress=False)

    labels = split.labels.to(device)
    pred = torch.randint(0, 19, labels.shape, device=device, dtype=torch.uint8)
    matrix = ConfusionMatrix(19, device=device)
    update_s = median_seconds(lambda: matrix.update(labels, pred), 5, device=device)
    return {
        "images": n,
        "batch_size": batch_size,
        "images_per_s": stats.images_per_second,
        "confusion_mpix_per_s": labels.numel() / update_s / 1e6,
        "label_resolution": f"{labels.shape[-1]}x{labels.shape[-2]}",
    }


# --- the whole command ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def format_result(r: PresetResult) -> list[str]:
    """The human-readable lines of one preset."""
    step_total = r.fast.median + r.breakdown.get("data wait", 0.0) + r.breakdown.get("tracking", 0.0)
    share = lambda s: f"{100 * s / step_total:.1f}%"  # noqa: E731
    parts = " | ".join(f"{k} {_ms(v)} ({share(v)})" for k, v in r.breakdown.items())
    lines = [
        f"  step, median of {r.fast.n} (p10-p90):  fast {_ms(r.fast.median)} ({_ms(r.fast.p10)}-{_ms(r.fast.p90)})"
        f"   plain eager fp32 {_ms(r.plain.median)} ({_ms(r.plain.p10)}-{_ms(r.plain.p90)})"
        f"   ratio {r.ratio:.2f}x (of the medians {r.ratio_of_medians:.2f}x)",
        f"  where the fast iteration goes:       {parts}",
        f"  compute: {r.flops / 1e9:.2f} GFLOP/step; floor {_ms(r.floor_s)} (its {r.floor['distinct_convolutions']} "
        f"distinct convolutions, forward and backward, each timed alone at its best"
        f"{', capped' if r.floor['capped'] else ''}) = {100 * r.floor_share:.0f}% of the fast step "
        f"({100 * r.floor_share_plain:.0f}% of the plain one); for reference, matmul "
        f"{r.matmul_flops_per_s / 1e9:.0f} GFLOP/s",
    ]
    if r.tracking:
        t = r.tracking
        lines.append(f"  tracking: metrics {100 * t['share']:.2f}% of the training loop ({t['iterations']} iterations "
                     f"of cgbench run, log_every {r.config['log_every']}); a checkpoint takes "
                     f"{_ms(t['checkpoint_seconds'])}, {100 * t['checkpoint_share']:.2f}% at checkpoint_every "
                     f"{r.config['checkpoint_every']}")
    memory = f"  memory: peak RSS {r.peak_rss_bytes / 2**20:.0f} MiB"
    if r.cuda_peak_bytes is not None:
        memory += f", CUDA peak {r.cuda_peak_bytes / 2**20:.0f} MiB"
    lines.append(memory)
    if r.eval:
        e = r.eval
        lines.append(f"  evaluation: {e['images_per_s']:.1f} images/s through G + FCN (batch {e['batch_size']}, "
                     f"{e['images']} val images); confusion update {e['confusion_mpix_per_s']:.0f} Mpx/s "
                     f"at {e['label_resolution']}")
    return lines


def log_to_mlflow(report: dict[str, Any], tracking_uri: str | None, experiment: str) -> str:
    """Record the benchmark as a ``cgbench.method=bench`` run: metrics per preset and the JSON."""
    from cgbench.protocol import TAG_PREFIX
    from cgbench.tracking import RunTracker

    tracker = RunTracker.create(tracking_uri, experiment, "bench", {TAG_PREFIX + "method": "bench"})
    tracker.log_environment()
    metrics = {}
    for preset, r in report["presets"].items():
        metrics.update({
            f"bench/{preset}/fast_s": r["fast"]["median"],
            f"bench/{preset}/plain_s": r["plain"]["median"],
            f"bench/{preset}/ratio": r["ratio"],
            f"bench/{preset}/floor_share": r["floor_share"],
            f"bench/{preset}/peak_rss_mib": r["peak_rss_bytes"] / 2**20,
        })
        if r["tracking"]:
            metrics[f"bench/{preset}/tracking_share"] = r["tracking"]["share"]
        if r["eval"]:
            metrics[f"bench/{preset}/eval_images_per_s"] = r["eval"]["images_per_s"]
    tracker.log_metrics(metrics, 0)
    tracker.flush()
    tracker.log_json(report, "bench.json")
    tracker.end("FINISHED")
    return tracker.run_id
