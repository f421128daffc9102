"""``cgbench quickstart``: the main job, end to end, on a CPU."""

from __future__ import annotations

import click

from cgbench.cli.common import PRESET_NAMES, data_options, handle_errors


@click.command()
@click.option("--out", default="reports", show_default=True, help="Folder for the report files.")
@click.option("--jobs", default=2, show_default=True, help="Runs in parallel processes.")
@data_options
@click.option("--preset", type=click.Choice(PRESET_NAMES), default=None, help="Default: the spec's (cpu).")
@click.option("--tracking-uri", default=None, help="Default: $MLFLOW_TRACKING_URI, else MLflow's default.")
@click.option("--progress/--no-progress", default=True)
@handle_errors
def quickstart(out, jobs, data_dir, dataset, preset, tracking_uri, progress):
    """The main job: SynthCity, the FCN evaluator, the ablation sweep, the report — on a CPU, in minutes."""
    from cgbench.quickstart import run_quickstart

    run_quickstart(out=out, jobs=jobs, data=data_dir or dataset, preset=preset, tracking_uri=tracking_uri,
                   progress=progress, echo=click.echo)
