"""``cgbench bench``: the training step timed (fast vs plain), its parts, FLOPs, memory, evaluation."""

from __future__ import annotations

from pathlib import Path

import click

from cgbench.cli.common import PRESET_NAMES, data_options, handle_errors, resolve_config


@click.command()
@data_options
@click.option("--preset", "presets", type=click.Choice(PRESET_NAMES), multiple=True,
              help="Presets to time (repeatable). Default: cpu and paper.")
@click.option("--method", default="cyclegan", show_default=True, help="Training method to time.")
@click.option("--ablation", default="cyclegan", show_default=True)
@click.option("--iters", type=int, default=None,
              help="Timed steps per path (fast and plain, in alternating blocks), after --warmup. "
                   "Default: as many as the plain path runs in ~20 s, 10 to 100.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed steps first (compilation, caches).")
@click.option("--tracking-iters", type=int, default=None,
              help="Iterations of the real training loop that measure tracking's share. Default: --iters "
                   "(0: skip).")
@click.option("--eval/--no-eval", "with_eval", default=True, help="Also time evaluation (G + FCN, confusion).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one config key.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the full results as JSON (for tracking over time).")
@click.option("--log-mlflow", is_flag=True, help="Also record the results as an MLflow run (cgbench.method=bench).")
@click.option("--experiment", default="cgbench-bench", show_default=True, help="MLflow experiment for --log-mlflow.")
@click.option("--tracking-uri", default=None,
              help="MLflow store for --log-mlflow (default: MLFLOW_TRACKING_URI, else ./mlflow.db).")
@click.option("--tracking-store", default=None, metavar="URI",
              help="The MLflow store the tracking figure's runs write to, e.g. http://HOST:PORT of a server "
                   "(default: a throwaway sqlite file).")
@click.option("--share", "shares", type=int, multiple=True, metavar="N",
              help="Instead of the step's figures: the aggregate throughput of N runs sharing the device, "
                   "N processes stepping side by side (repeatable; on a GPU with and without CUDA graphs).")
@click.option("--share-seconds", type=float, default=None, help="Seconds each --share measurement steps. Default: 10.")
@handle_errors
def bench(data_dir, dataset, presets, method, ablation, iters, warmup, tracking_iters, with_eval, sets, json_path,
          log_mlflow, experiment, tracking_uri, tracking_store, shares, share_seconds):
    """Time the training step (fast vs plain eager fp32), its parts, FLOPs, memory and evaluation."""
    import json

    from cgbench.bench import SHARE_SECONDS, bench_preset, format_result, log_to_mlflow, machine, share_throughput
    from cgbench.errors import ConfigError
    from cgbench.methods import get_method

    if (iters is not None and iters < 1) or warmup < 0:
        raise ConfigError("--iters must be >= 1 and --warmup >= 0")
    if any(n < 1 for n in shares) or (share_seconds is not None and share_seconds <= 0):
        raise ConfigError("--share takes a number of runs >= 1, and --share-seconds a positive number")
    get_method(method)
    presets = presets or ("cpu", "paper")
    configs = [(p, resolve_config(p, None, sets, data_dir, dataset, method=method, ablation=ablation))
               for p in presets]  # every config is checked before anything is timed
    report = {"machine": machine(), "iters": iters, "warmup": warmup, "presets": {}}
    on = report["machine"]
    click.echo(f"{on['processor']}, {on['cpu_threads']} threads, torch {on['torch']}"
               + (f", {on['cuda']}" if on["cuda"] else ""))
    for preset, config in configs:
        if shares:
            click.echo(f"[{preset}] {config.method}/{config.ablation} at {config.image_size} px, runs sharing "
                       f"the device for {share_seconds or SHARE_SECONDS:g} s (member-steps/s, all members together):")
            report.setdefault("share", {})[preset] = share_throughput(config, shares, share_seconds or SHARE_SECONDS,
                                                                       click.echo)
            continue
        result = bench_preset(config, preset, iters=iters, warmup=warmup, tracking_iters=tracking_iters,
                              tracking_store=tracking_store, with_eval=with_eval, echo=click.echo)
        for line in format_result(result):
            click.echo(line)
        report["presets"][preset] = result.to_dict()
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2))
        click.echo(f"Wrote {json_path}")
    if log_mlflow:
        run_id = log_to_mlflow(report, tracking_uri, experiment)
        click.echo(f"Recorded as MLflow run {run_id} in experiment {experiment!r}.")
