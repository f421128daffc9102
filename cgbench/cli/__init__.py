"""The ``cgbench`` command line. Thin: parse, call the library, turn known errors into one line.

Exit status: 0 done, 1 a run failed (e.g. a non-finite loss), 2 a usage or input error,
130 interrupted (the run was checkpointed and can be resumed).

One module per command (``eval`` in :mod:`cgbench.cli.eval_cmd`); :mod:`cgbench.cli.common` holds
the error handling and the options several commands share.
"""

from __future__ import annotations

import click

from cgbench.cli import bench, data, eval_cmd, fcn, quickstart, report, run, study, sweep
from cgbench.cli.common import quiet


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cgbench")
def main() -> None:
    """Train, ablate and score CycleGAN with the paper's protocol; every number in MLflow."""
    quiet()


main.add_command(run.run)
main.add_command(data.data)
main.add_command(bench.bench)
main.add_command(sweep.sweep)
main.add_command(quickstart.quickstart)
main.add_command(eval_cmd.eval_)
main.add_command(fcn.fcn)
main.add_command(report.report)
main.add_command(study.study)
