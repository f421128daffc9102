"""``cgbench sweep``: every (row, seed) of a spec, trained and evaluated under one parent run."""

from __future__ import annotations

import sys

import click

from cgbench.cli.common import PRESET_NAMES, data_options, handle_errors


def _parse_seeds(text: str | None) -> tuple[int, ...] | None:
    """``--seeds 0,1,2`` as a tuple; None when not given (the spec's seeds)."""
    from cgbench.errors import ConfigError

    if not text:
        return None
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated integers such as 0,1,2, not {text!r}") from None


@click.command()
@click.argument("spec", type=str)
@click.option("--seeds", default=None, help="Comma-separated seeds (default: the spec's).")
@click.option("--jobs", default=1, show_default=True, help="Runs in parallel processes; cores are shared.")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default=None, help="Default: the spec's preset.")
@data_options
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key in every run.")
@click.option("--experiment", default=None, help="MLflow experiment (default: the spec's name).")
@click.option("--tracking-uri", default=None, help="Default: $MLFLOW_TRACKING_URI, else MLflow's default.")
@click.option("--dry-run", is_flag=True, help="Print the plan and an estimated time; run nothing.")
@click.option("--progress/--no-progress", default=True)
@click.option("--executor", "executor_name", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where children run: local processes (--jobs at a time) or Ray tasks on a cluster "
                   '(pip install -e ".[ray]").')
@click.option("--ray-address", default=None, metavar="ADDRESS",
              help="The Ray cluster (host:port, or auto for the one this machine joined). Default: a local "
                   "cluster started for the sweep.")
@handle_errors
def sweep(spec, seeds, jobs, preset, data_dir, dataset, sets, experiment, tracking_uri, dry_run, progress,
          executor_name, ray_address):
    """Train and evaluate every (row, seed) of SPEC (e.g. runs/ablations.yaml) under one parent run.

    Re-running the same command skips finished runs and resumes interrupted ones."""
    from cgbench.config import parse_set
    from cgbench.errors import ConfigError
    from cgbench.sweep import run_sweep

    if data_dir and dataset:
        raise ConfigError("give either --data DIR or --dataset synthcity, not both")
    result = run_sweep(spec, seeds=_parse_seeds(seeds), jobs=jobs, preset=preset, data=data_dir or dataset,
                       sets=parse_set(sets), tracking_uri=tracking_uri, experiment=experiment, dry_run=dry_run,
                       progress=progress, echo=click.echo, executor_name=executor_name, ray_address=ray_address)
    if result.failed:
        sys.exit(1)
