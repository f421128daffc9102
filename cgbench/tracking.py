"""Everything MLflow: the run lifecycle, batched metrics, tags, inputs, artifacts, checkpoints.

This is the only module that writes to MLflow. The tracking URI is the user's ``--tracking-uri``,
else ``MLFLOW_TRACKING_URI``, else MLflow's own default, so a plain ``mlflow ui`` started in the
same directory shows the runs.

Metrics are buffered and written with one ``log_batch`` call per flush, so recording every loss
term at every step costs little. Checkpoints are written atomically into the run's artifact
folder when it is local (the common case) and uploaded otherwise.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import torch

# MLflow draws a progress bar for every artifact it copies (each checkpoint read); keep it quiet.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow's HTTP client retries a failed request 7 times over about 4 minutes before it raises; a run
# waits for its server under cgbench's own limit (PatientClient), so MLflow's retries are kept short.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

from mlflow import MlflowClient  # noqa: E402
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from cgbench.checkpoints import CheckpointStore, local_path
from cgbench.errors import CgbenchError, ConfigError, StoreUnavailable
from cgbench.leases import Lease
from cgbench.protocol import TAG_PREFIX, Tags  # noqa: F401 (TAG_PREFIX: report.study and bench import it from here)
from cgbench.stores import checked_uri, ensure_sqlite_store, sqlite_path

SERVER_WAIT_ENV = "CGBENCH_SERVER_WAIT_S"
DEFAULT_SERVER_WAIT_S = 300.0  # how long a run waits for its store to answer again before it stops
CONFIG_ARTIFACT = "config.json"  # every run's full resolved config
BATCH_LIMITS = {"metrics": 1000, "params": 100, "tags": 1000}  # MLflow's limits per log_batch call
PACKAGES = ("torch", "torchvision", "mlflow", "numpy", "cityscapesScripts", "cgbench")


def client_for(tracking_uri: str | None) -> MlflowClient:
    """An MLflow client for ``tracking_uri`` (None: the environment's or MLflow's default), checked
    first and, for a new sqlite file, created once (:mod:`cgbench.stores`)."""
    uri = checked_uri(tracking_uri)
    ensure_sqlite_store(uri, _artifact_root(uri))
    return MlflowClient(tracking_uri=uri)


def code_version() -> str:
    """The git commit of the source tree (with ``-dirty`` when modified), else the package version."""
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode == 0:
            dirty = subprocess.run(
                ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=5,
            )
            return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "cgbench-" + metadata.version("cgbench")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


class _FolderSource(DatasetSource):
    """An MLflow dataset source that is a local folder (or any URI the user gave)."""

    def __init__(self, uri: str):
        self._uri = uri

    @staticmethod
    def _get_source_type() -> str:
        return "folder"

    def load(self, **kwargs: Any) -> str:
        return self._uri

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> _FolderSource:
        return cls(str(raw_source))

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self._uri}

    @classmethod
    def from_dict(cls, source_dict: dict[str, Any]) -> _FolderSource:
        return cls(source_dict["uri"])



def server_wait_seconds() -> float:
    """How long a run waits for its store to answer again (``CGBENCH_SERVER_WAIT_S``, default
    :data:`DEFAULT_SERVER_WAIT_S`)."""
    raw = os.environ.get(SERVER_WAIT_ENV, "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_SERVER_WAIT_S
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ConfigError(f"{SERVER_WAIT_ENV}={raw!r} is not a number of seconds >= 0; set it to e.g. 300")
    return seconds


def store_unreachable(exc: BaseException) -> bool:
    """The store could not be reached or written for now, so the same call may succeed later: a
    tracking server that is away, restarting or overloaded (connection refused or reset, a timeout,
    HTTP 502-504 after MLflow's own retries), or a sqlite file locked by another writer."""
    import requests

    transient = (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                 requests.exceptions.RetryError, ConnectionError, TimeoutError)
    seen: BaseException | None = exc
    for _ in range(10):  # the chain of causes, far enough
        if seen is None:
            return False
        if isinstance(seen, transient) or "database is locked" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class PatientClient:
    """An MlflowClient whose idempotent calls wait for the store: a call that fails because the
    store cannot be reached (:func:`store_unreachable`) is made again, with backoff, until it
    succeeds or ``wait_s`` seconds have passed since the first failure (then
    :class:`StoreUnavailable`). Only calls that change nothing when made twice are retried: a
    metric sent again with its step, timestamp and value is the same row to MLflow's SQL stores,
    which keep one (a retry never duplicates a history); tags, params of the same value,
    artifacts of the same name and a run's status are overwritten. Creating runs and experiments
    (the leases) is not retried."""

    IDEMPOTENT = frozenset({
        "log_batch", "log_artifact", "log_artifacts", "log_dict", "log_text", "log_image", "log_figure",
        "set_terminated", "update_run", "set_tag", "get_run", "get_metric_history", "list_artifacts",
        "download_artifacts", "search_runs", "search_experiments", "get_experiment_by_name", "set_experiment_tag",
    })

    def __init__(self, client: MlflowClient, run_id: str | None = None, wait_s: float | None = None):
        self.client, self.run_id = client, run_id
        self.wait_s = server_wait_seconds() if wait_s is None else wait_s

    @property
    def tracking_uri(self) -> str:
        return self.client.tracking_uri

    def __getattr__(self, name: str):
        attr = getattr(self.client, name)
        if name not in self.IDEMPOTENT:
            return attr
        return lambda *args, **kwargs: self.call(attr, *args, **kwargs)

    def call(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, made again while the store cannot be reached (see the class);
        the wait is said on stderr when it begins and when it ends."""
        deadline, delay = None, 0.5
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not store_unreachable(exc):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.wait_s
                    _say(f"cgbench: the MLflow store {self.tracking_uri} does not answer ({_first_line(exc)}); "
                         f"waiting for it up to {self.wait_s:g} s ({SERVER_WAIT_ENV})")
                if now >= deadline:
                    run = f"run {self.run_id}" if self.run_id else "the command"
                    raise StoreUnavailable(
                        f"the MLflow store {self.tracking_uri} did not answer for {self.wait_s:g} s "
                        f"({_first_line(exc)}); {run} stopped. Start the store again, then continue with "
                        f"`cgbench run --resume {self.run_id or 'RUN_ID'}` (a sweep: the same command again); "
                        f"the wait is {SERVER_WAIT_ENV}") from None
                time.sleep(min(delay, deadline - now))
                delay = min(2 * delay, 10.0)
                continue
            if deadline is not None:
                _say(f"cgbench: the MLflow store {self.tracking_uri} answers again")
            return result


def _say(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


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
        dataset = MetaDataset(source=_FolderSource(source_uri), name=name, digest=digest)
        entity = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])
        self.client.log_inputs(self.run_id, datasets=[entity])

    def log_environment(self) -> None:
        versions = package_versions()
        self.set_tags({Tags.package(k): v for k, v in versions.items()})
        self.log_json(versions, "environment.json")

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


def load_run_checkpoint(
    client: MlflowClient, run_id: str, map_location: str | torch.device = "cpu"
) -> dict[str, Any] | None:
    """The newest checkpoint of a run that loads (an older one when the newest cannot be read)."""
    return CheckpointStore(client, run_id).load_newest(map_location)


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


def _artifact_root(tracking_uri: str) -> str | None:
    """For a sqlite store, keep artifacts beside the database file (MLflow's own default would put
    them under the current directory, wherever the command happened to run)."""
    db = sqlite_path(tracking_uri)
    return None if db is None else (db.resolve().parent / "mlruns").as_uri()


#: MLflow 3 opens a new experiment in its GenAI view (traces, prompts); this tag marks it as model
#: training, where runs, their metrics and their comparison are. (MLflow 3.17's UI takes the view
#: from one switch for all experiments, which a link's ``?workflowType=machine_learning`` sets:
#: :func:`ui_link`.)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
UI_ADDRESS = "http://127.0.0.1:5000"  # where a plain `mlflow ui` serves


def ui_link(client: MlflowClient, run_id: str, tracking_uri: str | None = None) -> str:
    """How to look at a run: the ``mlflow ui`` command for its store and the address of its
    experiment's runs in the model-training view."""
    run = client.get_run(run_id)
    command = "mlflow ui" + (f" --backend-store-uri {tracking_uri}" if tracking_uri else "")
    return (f"{command}, then open {UI_ADDRESS}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
            "?workflowType=machine_learning")


def ensure_experiment(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        root = _artifact_root(client.tracking_uri)
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


