"""Everything MLflow. This package is the only place that writes to MLflow: the runs, their
metrics, tags, inputs, artifacts and checkpoints, and the leases (kept as experiments in the same
store, so every process that uses the store sees them).

- :mod:`.client`: the store a command uses, and a client that waits for it while it is away;
- :mod:`.runs`: one run over its life (:class:`RunTracker`, :func:`start_run`);
- :mod:`.provenance`: where a run came from (code version, packages, config, dataset sources);
- :mod:`.queries`: finding and reading runs (:func:`get_run`, :func:`search_runs`, ...);
- :mod:`.checkpoints`: a run's checkpoints among its artifacts;
- :mod:`.leases`: one writer at a time per run, sweep child or shared evaluator.
"""

import os

# MLflow draws a progress bar for every artifact it copies (each checkpoint read); keep it quiet.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow's HTTP client retries a failed request 7 times over about 4 minutes before it raises; a run
# waits for its server under cgbench's own limit (PatientClient), so MLflow's retries are kept short.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

from cgbench.tracking.checkpoints import load_run_checkpoint  # noqa: E402
from cgbench.tracking.client import PatientClient, client_for  # noqa: E402
from cgbench.tracking.leases import Lease  # noqa: E402
from cgbench.tracking.queries import (  # noqa: E402
    ensure_experiment, get_run, read_run_json, recorded_config, search_runs, ui_link,
)
from cgbench.tracking.runs import RunTracker, start_run  # noqa: E402

__all__ = [
    "Lease", "PatientClient", "RunTracker", "client_for", "ensure_experiment", "get_run", "load_run_checkpoint",
    "read_run_json", "recorded_config", "search_runs", "start_run", "ui_link",
]
