"""``cgbench study``: the paper's Table 1, a real-vs-fake perceptual study served as a local page."""

from __future__ import annotations

import click

from cgbench.cli.common import handle_errors, options

STUDY_DIRECTIONS = ("labels2photo", "photo2labels")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

study_options = options(
    click.option("--direction", type=click.Choice(STUDY_DIRECTIONS), default="labels2photo",
                 show_default=True, help="Which translations are judged."),
    click.option("--study-dir", default=None, metavar="DIR",
                 help="The study's database and image cache. Default: study/ beside the MLflow store."),
    click.option("--tracking-uri", default=None,
                 help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else MLflow's default."),
)


@click.group()
def study() -> None:
    """The paper's Table 1: a real-vs-fake perceptual study, served as a local web page."""


@study.command("serve")
@click.option("--run", "run_ids", multiple=True, metavar="RUN_ID",
              help="A method's run (repeatable); each new participant gets the one with the fewest "
                   "completed sessions.")
@study_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than this machine's loopback opens the study to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: a free port.")
@click.option("--device", default="auto", show_default=True, help="Where the images are generated (once per run).")
@handle_errors
def study_serve(run_ids, direction, study_dir, tracking_uri, host, port, device):
    """Serve the study: per participant, 10 practice trials with feedback, then 40 scored ones."""
    from cgbench.study.server import serve

    if host not in LOCAL_HOSTS:
        click.echo(f"warning: serving on {host}: anyone who can reach this machine on port {port} can take part "
                   "and see the study's images", err=True)
    serve(run_ids, direction, host, port, tracking_uri, study_dir, device, echo=click.echo)


@study.command("results")
@study_options
@handle_errors
def study_results(direction, study_dir, tracking_uri):
    """Write each method's fooled rate (completed sessions only) into its run as MLflow metrics."""
    from cgbench.study.results import study_results as compute

    results = compute(direction, tracking_uri, study_dir)
    click.echo(f"{'run':34s} {'participants':>12s}  fooled rate (% of scored trials, mean ± s.e.)")
    for r in results:
        click.echo(f"{r.run_id:34s} {r.n:12d}  {r.fooled_rate:.1f}" + (f" ± {r.sem:.1f}" if r.n > 1 else ""))
    click.echo(f"Recorded as study/{direction}/fooled_rate, _sem and _participants in each run; "
               "tabulate with: cgbench report --table 1")
