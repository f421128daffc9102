"""The MLflow store a command talks to, and a client that waits for it while it is away.

The tracking URI is the user's ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's
own default, so a plain ``mlflow ui`` started in the same directory shows the runs. A tracking
server that restarts, or a sqlite file locked by another writer, stops nothing at once:
:class:`PatientClient` makes an idempotent call again until the store answers or
``CGBENCH_SERVER_WAIT_S`` seconds have passed (then :class:`~cgbench.errors.StoreUnavailable`).
"""

from __future__ import annotations

import os
import sys
import time

from mlflow import MlflowClient

from cgbench.errors import ConfigError, StoreUnavailable
from cgbench.stores import checked_uri, ensure_sqlite_store, sqlite_path

SERVER_WAIT_ENV = "CGBENCH_SERVER_WAIT_S"
DEFAULT_SERVER_WAIT_S = 300.0  # how long a run waits for its store to answer again before it stops


def client_for(tracking_uri: str | None) -> MlflowClient:
    """An MLflow client for ``tracking_uri`` (None: the environment's or MLflow's default), checked
    first and, for a new sqlite file, created once (:mod:`cgbench.stores`)."""
    uri = checked_uri(tracking_uri)
    ensure_sqlite_store(uri, artifact_root(uri))
    return MlflowClient(tracking_uri=uri)


def artifact_root(tracking_uri: str) -> str | None:
    """For a sqlite store, keep artifacts beside the database file (MLflow's own default would put
    them under the current directory, wherever the command happened to run)."""
    db = sqlite_path(tracking_uri)
    return None if db is None else (db.resolve().parent / "mlruns").as_uri()


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
    print(line, file=sys.stderr, flush=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
