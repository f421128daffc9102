"""One MLflow run over its life: created (with everything a run records at its start) or
reopened, its metrics buffered and written in batches, its params, tags, inputs, artifacts and
checkpoints, and its status set as its block ends.

Metrics are buffered and written with one ``log_batch`` call per flush, so recording every loss
term at every step costs little. A tracker that writes a run over time holds the run's lease
(:mod:`cgbench.tracking.leases`): one writer at a time.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from cgbench.errors import StoreUnavailable
from cgbench.protocol import Tags
from cgbench.tracking.checkpoints import CheckpointStore, local_path
from cgbench.tracking.client import PatientClient, client_for, store_unreachable
from cgbench.tracking.leases import Lease
from cgbench.tracking.provenance import (
    CONFIG_ARTIFACT, ENVIRONMENT_ARTIFACT, code_version, dataset_input, package_tags, package_versions,
)
from cgbench.tracking.queries import ensure_experiment, get_run, read_run_json

BATCH_LIMITS = {"metrics": 1000, "params": 100, "tags": 1000}  # MLflow's limits per log_batch call


class RunTracker:
    """One MLflow run: created fresh or reopened for ``--resume``. A tracker that writes a run over
    time (training) holds the run's lease (:meth:`take_lease`): while it does, no other process
    writes the run, and once another process has taken the lease over, this one writes nothing."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = PatientClient(client, run_id=run_id)  # waits for a store that is away for a while
        self.run_id = run_id
        self._buffer: list[Metric] = []
        self.lease: Lease | None = None

    # --- lifecycle -----------------------------------------------------------------
    @classmethod
    def create(
        cls, tracking_uri: str | None, experiment: str, run_name: str | None, tags: dict[str, str],
        parent_run_id: str | None = None,
    ) -> RunTracker:
        client = client_for(tracking_uri)
        experiment_id = ensure_experiment(client, experiment)
        all_tags = {**tags, Tags.CODE_VERSION: code_version()}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
        return cls(client, run.info.run_id)

    @classmethod
    def reopen(cls, tracking_uri: str | None, run_id: str) -> RunTracker:
        client = client_for(tracking_uri)
        get_run(client, run_id)
        client.update_run(run_id, status="RUNNING")
        return cls(client, run_id)

    @classmethod
    def claim(cls, tracking_uri: str | None, run_id: str) -> RunTracker:
        """The existing run ``run_id``, with its lease taken (:class:`LeaseHeld` when another live
        process writes it); its status is not touched (:meth:`mark_running` does that)."""
        client = client_for(tracking_uri)
        get_run(client, run_id)
        tracker = cls(client, run_id)
        tracker.take_lease()
        return tracker

    def take_lease(self) -> None:
        self.lease = Lease(self.client, f"run/{self.run_id}")
        self.lease.acquire(f"run {self.run_id}")

    def release_lease(self) -> None:
        if self.lease is not None:
            self.lease.release()

    def _check_lease(self) -> None:
        if self.lease is not None:
            self.lease.check()

    def mark_running(self) -> None:
        self._check_lease()
        self.client.update_run(self.run_id, status="RUNNING")

    def end(self, status: str = "FINISHED") -> None:
        """Flush, then set the status (also when the flush fails) and release the lease."""
        self._check_lease()
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status=status)
            self.release_lease()

    @contextlib.contextmanager
    def ending(self) -> Iterator[RunTracker]:
        """Ends the run with the status its block deserves: FINISHED when the block returns; KILLED
        for Ctrl-C or SIGTERM (``KeyboardInterrupt``, or an exception whose ``run_status`` is
        ``"KILLED"``); FAILED for any other exception, whose message is recorded as the tag
        ``cgbench.failure`` when it carries ``record_failure``; untouched for an exception whose
        ``run_status`` is None (the lease was lost: the run is another process's now). The
        exception is re-raised."""
        try:
            yield self
        except BaseException as exc:
            status = getattr(exc, "run_status", "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            if status is None:
                self.release_lease()
                raise
            if isinstance(exc, StoreUnavailable):
                self.end_if_reachable(status)
                raise
            if getattr(exc, "record_failure", False):
                self.set_tags({Tags.FAILURE: str(exc)})
            self.end(status)
            raise
        self.end("FINISHED")

    def end_if_reachable(self, status: str) -> None:
        """After :class:`StoreUnavailable`: one more try, without waiting, to flush and set the
        status; if the store is still away the run stays as it is (``--resume`` continues it)."""
        self.client.wait_s = 0.0
        try:
            self.end(status)
        except Exception as exc:
            if not (isinstance(exc, StoreUnavailable) or store_unreachable(exc)):
                raise

    @property
    def run(self):
        return self.client.get_run(self.run_id)

    @property
    def name(self) -> str:
        return self.run.data.tags.get(MLFLOW_RUN_NAME, self.run_id)

    # --- params, tags, inputs ------------------------------------------------------
    def _log_batch(self, kind: str, items: list) -> None:
        """``items`` (metrics, params or tags) in as many ``log_batch`` calls as MLflow's limits need."""
        size = BATCH_LIMITS[kind]
        for start in range(0, len(items), size):
            self.client.log_batch(self.run_id, **{kind: items[start : start + size]}, synchronous=True)

    def log_params(self, params: dict[str, Any]) -> None:
        self._log_batch("params", [Param(k, str(v)) for k, v in params.items()])

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._log_batch("tags", [RunTag(k, str(v)) for k, v in tags.items()])

    def log_dataset(self, name: str, source_uri: str, digest: str, context: str = "training") -> None:
        self.client.log_inputs(self.run_id, datasets=[dataset_input(name, source_uri, digest, context)])

    def log_environment(self) -> None:
        versions = package_versions()
        self.set_tags(package_tags(versions))
        self.log_json(versions, ENVIRONMENT_ARTIFACT)

    # --- metrics ---------------------------------------------------------------------
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Buffer one step's metrics; they reach MLflow at the next :meth:`flush`."""
        now = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), now, step) for k, v in metrics.items())

    def flush(self) -> None:
        """Write every buffered metric, a step's metrics always in the same ``log_batch`` call (one
        transaction), so a flush cut short (kill -9) records whole steps only."""
        self._check_lease()
        batches, batch = [], []
        for _, metrics in itertools.groupby(self._buffer, key=lambda m: m.step):
            metrics = list(metrics)
            if batch and len(batch) + len(metrics) > BATCH_LIMITS["metrics"]:
                batches.append(batch)
                batch = []
            batch += metrics
        if batch:
            batches.append(batch)
        for chunk in batches:
            self._log_batch("metrics", chunk)
            self._buffer = self._buffer[len(chunk):]  # written: never sent twice

    def log_result_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Record a result (e.g. evaluation scores) so that re-computing it replaces it.

        MLflow keeps an append-only history per metric key and shows the value with the highest
        (step, timestamp, value). For each key: if the value shown at ``step`` is already exactly
        this one, it is re-sent with the stored timestamp, so the store sees the same
        (key, step, timestamp, value) row and keeps one copy (no duplicate history); otherwise it
        is written with a timestamp later than every stored one at ``step``, so it becomes the
        displayed value while the earlier result stays visible in the key's history.
        Written at once (not buffered).
        """
        now = int(time.time() * 1000)
        batch = []
        for key, value in metrics.items():
            value = float(value)
            at_step = [m for m in self.client.get_metric_history(self.run_id, key) if m.step == step]
            shown = max(at_step, key=lambda m: (m.timestamp, m.value), default=None)
            if shown is not None and shown.value == value:
                timestamp = shown.timestamp
            else:
                timestamp = max([now] + [m.timestamp + 1 for m in at_step])
            batch.append(Metric(key, value, timestamp, step))
        self._log_batch("metrics", batch)

    def read_json(self, name: str) -> Any:
        """A JSON artifact of this run, or None when it has none."""
        return read_run_json(self.client, self.run_id, name)

    def last_logged_step(self, key: str) -> int:
        """The highest step recorded for ``key`` (-1 when none)."""
        history = self.client.get_metric_history(self.run_id, key)
        return max((m.step for m in history), default=-1)

    # --- artifacts -------------------------------------------------------------------
    @property
    def artifact_dir(self) -> Path | None:
        return local_path(self.run.info.artifact_uri)

    def log_file(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_json(self, data: Any, name: str) -> None:
        self.client.log_dict(self.run_id, data, name)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_figure(self, figure, name: str) -> None:
        self.client.log_figure(self.run_id, figure, name)

    def log_image(self, image, name: str) -> None:
        """Log a PIL image (or HxWx3 uint8 array) as the PNG artifact ``name``."""
        self.client.log_image(self.run_id, image, artifact_file=name)

    def log_image_rows(self, rows: list[torch.Tensor], name: str) -> None:
        """Log batches of uint8 (N, 3, H, W) images as the rows of one PNG grid (white gaps);
        rows are cut to the shortest batch, and nothing is logged when that is empty."""
        from torchvision.utils import make_grid

        n = min((len(r) for r in rows), default=0)
        if n == 0:
            return
        grid = make_grid(torch.cat([r[:n].cpu() for r in rows]), nrow=n, padding=2, pad_value=255)
        self.log_image(grid.permute(1, 2, 0).numpy(), name)

    def delete_artifacts(self, artifact_path: str) -> None:
        """Remove a folder of artifacts (used when a result is re-computed, to replace it)."""
        local = self.artifact_dir
        if local is None:
            return  # remote stores overwrite files of the same name; nothing to clean up
        target = local / artifact_path
        if target.is_dir():
            for path in sorted(target.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            target.rmdir()

    def replace_folder(self, folder: Path, artifact_path: str) -> None:
        """The files of a local ``folder`` as the artifacts under ``artifact_path``, replacing
        what was there."""
        self.delete_artifacts(artifact_path)
        self.client.log_artifacts(self.run_id, str(folder), artifact_path)

    # --- checkpoints -----------------------------------------------------------------
    @property
    def checkpoints(self) -> CheckpointStore:
        return CheckpointStore(self.client, self.run_id, self.artifact_dir)

    def save_checkpoint(self, state: dict[str, Any], step: int) -> None:
        self._check_lease()
        self.checkpoints.save(state, step)

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The newest readable checkpoint, or None when the run has none."""
        return self.checkpoints.load_newest(map_location)


def start_run(
    tracking_uri: str | None,
    experiment: str,
    name: str,
    tags: dict[str, str],
    params: dict[str, Any],
    config: dict[str, Any],
    datasets: list[tuple[str, str, str, str]] = (),
    parent_run_id: str | None = None,
    lease: bool = False,
) -> RunTracker:
    """A new run with everything a run records at its start: tags (and the code version), params,
    the full resolved config as ``config.json``, the package versions, and its datasets as MLflow
    inputs, each ``(name, folder, digest, context)``. With ``lease``, the run's lease is taken
    first. A failure on the way marks the run FAILED (it is never left RUNNING)."""
    tracker = RunTracker.create(tracking_uri, experiment, name, tags, parent_run_id=parent_run_id)
    try:
        if lease:
            tracker.take_lease()
        tracker.log_params(params)
        tracker.log_json(config, CONFIG_ARTIFACT)
        tracker.log_environment()
        for dataset_name, folder, digest, context in datasets:
            tracker.log_dataset(dataset_name, folder, digest, context=context)
    except BaseException:
        tracker.end("FAILED")
        raise
    return tracker
