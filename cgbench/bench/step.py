"""One preset's step, measured: the fast step (the speed settings a run would use) against the plain
one (eager fp32) in alternating blocks on the same batches, the fast step's parts, its FLOPs and
compute floor, peak memory, tracking's share of the real loop, and evaluation's throughput."""

from __future__ import annotations

import dataclasses
import resource
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from cgbench.bench.floor import compute_floor, matmul_throughput
from cgbench.bench.gpu import gpu_figures
from cgbench.bench.paths import REPLAYS, Stopwatch, alternate, build, instrument, warm_up
from cgbench.config import Config
from cgbench.speed import PLAIN_SETTINGS
from cgbench.timing import Spread, median_seconds

BUDGET_S, MIN_ITERS, MAX_ITERS = 20.0, 10, 100  # default number of timed steps per path

# --- measuring ---------------------------------------------------------------------------


def step_flops(method, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one training step (forward and backward matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        method.train_step(x, y)
    return int(counter.get_total_flops())



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
    """Every figure of one preset (the JSON's ``presets.<name>``)."""

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
    gpu: dict[str, Any] | None = None  # on CUDA: graphs on/off, busy fraction, peaks (cgbench.bench.gpu)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.gpu is None:  # a CPU's JSON holds what it always held
            del out["gpu"]
        return out


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

    fast = build(config, device)
    plain = build(config.replace(**PLAIN_SETTINGS), device)
    sampler = (PairedSampler if fast.paired else UnpairedSampler)(
        data.labels_rgb, data.photos, config.image_size, config.batch_size, config.seed, config.flip, config.disjoint
    )
    echo(f"[{preset}] {config.method}/{config.ablation} at {config.image_size} px, ngf {config.ngf}, "
         f"{config.n_blocks} blocks, batch {config.batch_size}; {device.type}, {threads} threads; "
         f"fast path: {fast.speed.describe()}")

    plain_step = warm_up(fast, plain, sampler, device, warmup)
    if iters is None:  # as many as fit in the budget: noisy machines need many cheap steps
        iters = int(min(MAX_ITERS, max(MIN_ITERS, BUDGET_S / plain_step)))
    if tracking_iters is None:
        tracking_iters = iters
    watch = Stopwatch(device)
    remove = instrument(fast, watch)  # after warm-up: a captured step is captured by then
    try:
        fast_s, plain_s, laps, block_ratios = alternate(fast, plain, sampler, device, iters, warmup, watch)
    finally:
        remove()

    parts = ("data wait", REPLAYS, "image pool") if fast.speed.cuda_graphs else (
        "data wait", "forward + backward", "optimizer", "image pool")
    breakdown = {p: statistics.median(lap.get(p, 0.0) for lap in laps) for p in parts} if laps else {}
    x, y = sampler.batch(0, device)
    flops = step_flops(plain, x, y)
    # the fast path's kernels, eagerly on one thread (a graph replay shows its kernels to no dispatch mode)
    eager = config.replace(parallel_halves="off", compile_mode="off", cuda_graphs="off")
    floor = compute_floor(build(eager, device), plain, device, x, y, fastest_step=min(fast_s + plain_s), echo=echo)
    throughput = matmul_throughput(device, torch.bfloat16 if fast.speed.amp == "bf16" else torch.float32)
    fast_spread, plain_spread = Spread.of(fast_s), Spread.of(plain_s)
    peak = peak_rss_bytes()
    cuda_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    speed = dataclasses.asdict(fast.speed)
    del fast, plain
    gpu = gpu_figures(config, sampler, device, iters, warmup, flops, echo) if device.type == "cuda" else None

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
        gpu=gpu,
    )
    if with_eval:
        result.eval = bench_eval(config, device, data.ref.root)
    return result


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
    from cgbench.plugins import EvalContext, Segmenter
    from cgbench.confusion import ConfusionMatrix

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

