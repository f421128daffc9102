"""``cgbench report``: the paper's tables from MLflow runs."""

from __future__ import annotations

import click

from cgbench.cli.common import handle_errors


@click.command()
@click.option("--experiment", default=None, help="Report every finished, evaluated run of this MLflow experiment. "
              "Default: cgbench.")
@click.option("--sweep", "sweep_run_id", default=None, metavar="RUN_ID",
              help="Report the runs of this sweep (the children of its parent run).")
@click.option("--table", "tables", default="all", show_default=True, metavar="1|2|3|4|5|all",
              help="The paper's tables to fill (comma-separated allowed); all: Tables 2-5. Table 1, the "
                   "perceptual study (cgbench study), when named.")
@click.option("--out", default="reports", show_default=True, metavar="DIR",
              help="Folder for <name>.md, .tex, .csv and .html.")
@click.option("--name", default=None, help="File name stem. Default: the experiment or sweep name.")
@click.option("--tracking-uri", default=None,
              help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else MLflow's default.")
@click.option("--log/--no-log", "log_to_mlflow", default=True, show_default=True,
              help="Also log the files as artifacts of a report run in the same experiment.")
@click.option("--split-settings", is_flag=True,
              help="Show runs of one row that differ in a training setting (image size, widths, blocks, length, ...) "
                   "as rows of their own, named by the setting, e.g. \"CycleGAN (32 px)\". Without it such a mix is "
                   "refused.")
@handle_errors
def report(experiment, sweep_run_id, tables, out, name, tracking_uri, log_to_mlflow, split_settings):
    """The paper's Tables 2-5 from MLflow runs: mean, 95% interval and Welch's test over seeds
    (and Table 1, the perceptual study, with --table 1)."""
    from cgbench.paths import check_creatable
    from cgbench.report import build_report

    check_creatable(out, "--out")  # before any run is read
    result = build_report(tracking_uri=tracking_uri, experiment=experiment, sweep_run_id=sweep_run_id,
                          tables=tables, out_dir=out, name=name, log_to_mlflow=log_to_mlflow,
                          split_settings=split_settings)
    click.echo(result.markdown)
    click.echo("Wrote " + ", ".join(str(p) for p in result.files)
               + (f"; logged in MLflow run {result.run_id}." if result.run_id else "."))
