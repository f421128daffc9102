"""What ``cgbench bench`` reports: the machine, each preset's lines, and the MLflow run."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from cgbench.bench.step import PresetResult
from cgbench.timing import ms


def machine() -> dict[str, Any]:
    """What the figures were measured on (the JSON's ``machine``)."""
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


def format_result(r: PresetResult) -> list[str]:
    """The human-readable lines of one preset."""
    step_total = r.fast.median + r.breakdown.get("data wait", 0.0) + r.breakdown.get("tracking", 0.0)
    share = lambda s: f"{100 * s / step_total:.1f}%"  # noqa: E731
    parts = " | ".join(f"{k} {ms(v)} ({share(v)})" for k, v in r.breakdown.items())
    lines = [
        f"  step, median of {r.fast.n} (p10-p90):  fast {ms(r.fast.median)} ({ms(r.fast.p10)}-{ms(r.fast.p90)})"
        f"   plain eager fp32 {ms(r.plain.median)} ({ms(r.plain.p10)}-{ms(r.plain.p90)})"
        f"   ratio {r.ratio:.2f}x (of the medians {r.ratio_of_medians:.2f}x)",
        f"  where the fast iteration goes:       {parts}",
        f"  compute: {r.flops / 1e9:.2f} GFLOP/step; floor {ms(r.floor_s)} (its {r.floor['distinct_convolutions']} "
        f"distinct convolutions, forward and backward, each timed alone at its best"
        f"{', capped' if r.floor['capped'] else ''}) = {100 * r.floor_share:.0f}% of the fast step "
        f"({100 * r.floor_share_plain:.0f}% of the plain one); for reference, matmul "
        f"{r.matmul_flops_per_s / 1e9:.0f} GFLOP/s",
    ]
    if r.tracking:
        t = r.tracking
        lines.append(f"  tracking: metrics {100 * t['share']:.2f}% of the training loop ({t['iterations']} iterations "
                     f"of cgbench run, log_every {r.config['log_every']}); a checkpoint takes "
                     f"{ms(t['checkpoint_seconds'])}, {100 * t['checkpoint_share']:.2f}% at checkpoint_every "
                     f"{r.config['checkpoint_every']}")
    memory = f"  memory: peak RSS {r.peak_rss_bytes / 2**20:.0f} MiB"
    if r.cuda_peak_bytes is not None:
        memory += f", CUDA peak {r.cuda_peak_bytes / 2**20:.0f} MiB"
    lines.append(memory)
    if r.gpu:
        lines += format_gpu(r.gpu, r.flops)
    if r.eval:
        e = r.eval
        lines.append(f"  evaluation: {e['images_per_s']:.1f} images/s through G + FCN (batch {e['batch_size']}, "
                     f"{e['images']} val images); confusion update {e['confusion_mpix_per_s']:.0f} Mpx/s "
                     f"at {e['label_resolution']}")
    return lines


def format_gpu(gpu: dict[str, Any], flops: int) -> list[str]:
    """The GPU's lines: the step with and without CUDA graphs, busy fractions, peaks and floors."""
    peak, floor = gpu["peak_flops_per_s"], gpu["floor_s"]
    tf32 = ", ".join(f"{k} {'on' if v else 'off'}" for k, v in gpu["tf32"].items())
    lines = [f"  GPU peak (large matmuls): fp32 {peak['fp32'] / 1e12:.1f} TFLOP/s, TF32 {peak['tf32'] / 1e12:.1f} "
             f"TFLOP/s; the step's {flops / 1e9:.1f} GFLOP need at least {ms(floor['fp32'])} in fp32, "
             f"{ms(floor['tf32'])} in TF32 (TF32 in the step: {tf32})"]
    graphs = gpu["graphs"]
    if "skipped" in graphs:
        return lines + [f"  CUDA graphs: not measured ({graphs['skipped']})"]
    on, off = graphs["on"], graphs["off"]
    lines.append(f"  CUDA graphs: step {ms(on['median'])} ({ms(on['p10'])}-{ms(on['p90'])}) with, "
                 f"{ms(off['median'])} ({ms(off['p10'])}-{ms(off['p90'])}) without; ratio {graphs['ratio']:.2f}x")
    busy = {k: (f"{100 * b['fraction']:.0f}%" if "fraction" in b else b["error"]) for k, b in graphs["busy"].items()}
    lines.append(f"  GPU busy (kernels and copies / wall time, torch.profiler): {busy['on']} with CUDA graphs, "
                 f"{busy['off']} without")
    return lines


def _metrics(report: dict[str, Any]) -> dict[str, float]:
    """Every preset's headline figures as MLflow metrics."""
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
        graphs = (r.get("gpu") or {}).get("graphs", {})
        if "ratio" in graphs:
            metrics[f"bench/{preset}/graphs_s"] = graphs["on"]["median"]
            metrics[f"bench/{preset}/graphs_off_s"] = graphs["off"]["median"]
            metrics[f"bench/{preset}/graphs_ratio"] = graphs["ratio"]
    for preset, share in report.get("share", {}).items():
        for n, run in share["runs"].items():
            for way in share["variants"]:
                metrics[f"bench/{preset}/share_{n}/{way}_member_steps_per_s"] = run[way]["member_steps_per_s"]
    return metrics


def log_to_mlflow(report: dict[str, Any], tracking_uri: str | None, experiment: str) -> str:
    """Record the benchmark as a ``cgbench.method=bench`` run: metrics per preset and the JSON."""
    from cgbench.protocol import BENCH_METHOD, Tags
    from cgbench.tracking import RunTracker

    tracker = RunTracker.create(tracking_uri, experiment, "bench", {Tags.METHOD: BENCH_METHOD})
    tracker.log_environment()
    tracker.log_metrics(_metrics(report), 0)
    tracker.flush()
    tracker.log_json(report, "bench.json")
    tracker.end("FINISHED")
    return tracker.run_id
