"""Finding and reading what the store holds: an experiment (created when missing), a run by id,
runs by an MLflow filter, a run's JSON artifacts and recorded config, and where to look at a run
in ``mlflow ui``."""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from cgbench.errors import CgbenchError
from cgbench.tracking.client import artifact_root
from cgbench.tracking.provenance import CONFIG_ARTIFACT

#: MLflow 3 opens a new experiment in its GenAI view (traces, prompts); this tag marks it as model
#: training, where runs, their metrics and their comparison are. (MLflow 3.17's UI takes the view
#: from one switch for all experiments, which a link's ``?workflowType=machine_learning`` sets:
#: :func:`ui_link`.)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
UI_ADDRESS = "http://127.0.0.1:5000"  # where a plain `mlflow ui` serves


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``: created when missing (its artifacts beside a sqlite store),
    restored when deleted."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        root = artifact_root(client.tracking_uri)
        return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None,
                                        tags=EXPERIMENT_TAGS)
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def get_run(client: MlflowClient, run_id: str):
    try:
        return client.get_run(run_id)
    except MlflowException:
        uri = client.tracking_uri
        raise CgbenchError(
            f"no run {run_id!r} in the MLflow store {uri}; check the run id in `mlflow ui` "
            "or pass the right --tracking-uri"
        ) from None


def search_runs(
    client: MlflowClient, experiment_names: list[str] | None, filter_string: str, order_by: list[str] | None = None,
    max_results: int = 1000,
):
    """Runs matching an MLflow filter, across the named experiments (all when None)."""
    if experiment_names is None:
        ids = [e.experiment_id for e in client.search_experiments()]
    else:
        ids = [e.experiment_id for n in experiment_names if (e := client.get_experiment_by_name(n))]
    if not ids:
        return []
    return client.search_runs(ids, filter_string=filter_string, order_by=order_by, max_results=max_results)


def read_run_json(client: MlflowClient, run_id: str, name: str) -> Any:
    """The JSON artifact ``name`` of a run, or None when the run has no such artifact."""
    with tempfile.TemporaryDirectory() as tmpdir:
        try:
            path = client.download_artifacts(run_id, name, tmpdir)
        except (MlflowException, OSError):
            return None
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return json.load(f)


def recorded_config(client: MlflowClient, run_id: str, purpose: str):
    """The full resolved config a run recorded; ``purpose`` ("resumed", "evaluated") names what
    cannot be done without it."""
    from cgbench.config import Config, apply_overrides

    recorded = read_run_json(client, run_id, CONFIG_ARTIFACT)
    if recorded is None:
        raise CgbenchError(f"run {run_id} has no recorded {CONFIG_ARTIFACT}, so it was not made by `cgbench run` "
                           f"and cannot be {purpose}")
    return apply_overrides(Config(), recorded, source=f"run {run_id}")


def ui_link(client: MlflowClient, run_id: str, tracking_uri: str | None = None) -> str:
    """How to look at a run: the ``mlflow ui`` command for its store and the address of its
    experiment's runs in the model-training view."""
    run = client.get_run(run_id)
    command = shlex.join(["mlflow", "ui", *(["--backend-store-uri", tracking_uri] if tracking_uri else [])])
    return (f"{command}, then open {UI_ADDRESS}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
            "?workflowType=machine_learning")
