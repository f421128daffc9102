"""One shared MLflow server on PostgreSQL, as several machines would use it: a real PostgreSQL
cluster in a temp folder (run by the unprivileged postgres user, listening on 127.0.0.1 only) and
`mlflow server --backend-store-uri postgresql://... --artifacts-destination DIR`, both started
and stopped here. A run survives the server going away for 10 seconds with every metric once;
a server away longer than the limit stops the run in one line and --resume continues it; sweeps
(--jobs 2, and --executor ray), report and eval go through the server."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from conftest import HANG_SECONDS, wait_until
from cgbench.cli import main
from cgbench.distributed import free_port


def _postgres_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else where Debian's postgresql package puts it."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    return found


if _postgres_bin("initdb") is None:
    pytest.skip("no PostgreSQL server here (Debian: apt-get install postgresql; .ci/run installs it)",
                allow_module_level=True)
try:
    import psycopg  # noqa: F401

    DIALECT = "postgresql+psycopg"
except ImportError:
    pytest.importorskip("psycopg2", reason='psycopg is installed by the test extra (pip install -e ".[test]")')
    DIALECT = "postgresql+psycopg2"

CGBENCH = Path(sys.executable).with_name("cgbench")
TRAIN_KEYS = ("loss/D_Y", "loss/G_gan", "loss/cycle_forward", "lr", "perf/sec_per_iter")
ITERS = 30
OUTAGE_SECONDS = 10


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its programs as the postgres user."""
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
    return ["runuser", "-u", "postgres", "--", *cmd]


def _check(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_SECONDS)
    assert out.returncode == 0, (cmd, out.stdout, out.stderr)


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL cluster in a temp folder on 127.0.0.1 with a database `mlflow`; its URI."""
    root = Path(tempfile.mkdtemp(prefix="cgpg", dir="/tmp"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    data, port = root / "data", free_port()
    _check(_as_postgres([_postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                         "--no-instructions"]))
    pg_ctl = _postgres_bin("pg_ctl")
    _check(_as_postgres([pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "600", "-o",
                         f"-c listen_addresses=127.0.0.1 -p {port} -k {root}", "start"]))
    try:
        _check(_as_postgres([_postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                             "mlflow"]))
        yield f"{DIALECT}://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True,
                       timeout=HANG_SECONDS)
        shutil.rmtree(root, ignore_errors=True)


class MlflowServer:
    """`mlflow server` on 127.0.0.1 in its own session; stopped and started again on one port."""

    def __init__(self, backend: str, artifacts: Path, log: Path):
        self.port, self.log = free_port(), log
        self.uri = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, "--artifacts-destination",
                    str(artifacts), "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(self.cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_until(self._healthy, self.proc, "mlflow server up", output=lambda: self.log.read_text()[-3000:])

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.uri + "/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=30)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc = None


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    server = MlflowServer(postgres, root / "artifacts", root / "mlflow-server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _popen(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([str(CGBENCH), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def _run_id(proc: subprocess.Popen) -> str:
    for line in proc.stdout:
        if match := re.search(r"MLflow run ([0-9a-f]{32})", line):
            return match.group(1)
    raise AssertionError(proc.stderr.read())


def _assert_each_step_once(client: MlflowClient, run_id: str, last: int = ITERS) -> None:
    for key in TRAIN_KEYS:
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == list(range(1, last + 1)), (key, len(steps), last)


def _pause_at_step(client: MlflowClient, run_id: str, proc: subprocess.Popen, step: int) -> None:
    """Stop (SIGSTOP) the training process once ``step`` is recorded, so that the server goes away
    while the run still has steps to record, however fast the machine."""
    wait_until(lambda: max((m.step for m in client.get_metric_history(run_id, "loss/D_Y")), default=0) >= step,
               proc, f"step {step} recorded", output=proc.stderr.read)
    os.kill(proc.pid, signal.SIGSTOP)


@contextlib.contextmanager
def _server_stopped_mid_run(server, proc: subprocess.Popen):
    """The training ``proc`` paused at step 10, the server stopped, the run let go on: yields
    (client, run id). Afterwards the server runs again and the process is gone, whatever happened."""
    try:
        run_id = _run_id(proc)
        client = MlflowClient(server.uri)
        _pause_at_step(client, run_id, proc, 10)
        server.stop()
        os.kill(proc.pid, signal.SIGCONT)
        yield client, run_id
    finally:
        if server.proc is None:
            server.start()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _train(synth_dir: Path, uri: str, experiment: str) -> list[str]:
    return ["run", "--data", str(synth_dir), "--tracking-uri", uri, "--preset", "tiny", "--iters", str(ITERS),
            "--set", "checkpoint_every=5", "--experiment", experiment, "--no-progress"]


def test_a_run_survives_the_server_away_for_ten_seconds(server, synth_dir, tmp_path):
    proc = _popen(_train(synth_dir, server.uri, "outage"), tmp_path)
    with _server_stopped_mid_run(server, proc) as (client, run_id):
        with pytest.raises(subprocess.TimeoutExpired):  # the run waits out the outage, alive
            proc.wait(timeout=OUTAGE_SECONDS)
        server.start()
        out, err = proc.communicate(timeout=HANG_SECONDS)
    assert proc.returncode == 0, err
    assert "does not answer" in err and "answers again" in err and "Traceback" not in err, err  # it did wait
    assert client.get_run(run_id).info.status == "FINISHED"
    _assert_each_step_once(client, run_id)


def test_a_server_away_longer_than_the_limit_stops_the_run_and_resume_continues(server, synth_dir, tmp_path):
    proc = _popen(_train(synth_dir, server.uri, "outage"), tmp_path, env={"CGBENCH_SERVER_WAIT_S": "2"})
    with _server_stopped_mid_run(server, proc) as (client, run_id):
        _, err = proc.communicate(timeout=HANG_SECONDS)
    assert proc.returncode == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "did not answer for 2 s" in errors[0] and f"cgbench run --resume {run_id}" in errors[0], errors
    assert client.get_run(run_id).info.status in ("RUNNING", "FAILED")  # FAILED if it could still say so

    resumed = CliRunner().invoke(main, ["run", "--resume", run_id, "--tracking-uri", server.uri, "--no-progress"])
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    assert client.get_run(run_id).info.status == "FINISHED"
    _assert_each_step_once(client, run_id)


SPEC = """\
name: {name}
preset: tiny
seeds: [0, 1]
evaluators: [seg]
set: {{iters: 10, checkpoint_every: 5}}
rows:
  - {{row: cyclegan, ablation: cyclegan}}
"""


def _sweep_children(client: MlflowClient, name: str, out: str) -> list:
    """The children of the sweep whose output is ``out``, after checking each was recorded whole."""
    parent_id = re.search(r"parent run ([0-9a-f]{32})", out).group(1)
    children = client.search_runs([client.get_experiment_by_name(name).experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(r.data.tags["cgbench.seed"] for r in children) == ["0", "1"]
    for run in children:
        assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
        _assert_each_step_once(client, run.info.run_id, 10)
    return children


def test_a_sweep_with_two_jobs_then_report_and_eval_through_the_server(server, synth_dir, tmp_path):
    spec = tmp_path / "shared.yaml"
    spec.write_text(SPEC.format(name="shared"))
    sweep = CliRunner().invoke(main, ["sweep", str(spec), "--jobs", "2", "--data", str(synth_dir), "--tracking-uri",
                                      server.uri, "--no-progress"])
    assert sweep.exit_code == 0, sweep.output + sweep.stderr
    client = MlflowClient(server.uri)
    children = _sweep_children(client, "shared", sweep.output)
    parent_id = children[0].data.tags["mlflow.parentRunId"]

    report = CliRunner().invoke(main, ["report", "--sweep", parent_id, "--table", "5", "--out",
                                       str(tmp_path / "reports"), "--tracking-uri", server.uri])
    assert report.exit_code == 0, report.output + report.stderr
    (markdown,) = (tmp_path / "reports").glob("*.md")
    assert "| CycleGAN | 2 |" in markdown.read_text()  # both seeds, read through the server
    child = children[0].info.run_id
    scored = CliRunner().invoke(main, ["eval", "--run", child, "--metric", "seg", "--tracking-uri", server.uri,
                                       "--no-progress"])
    assert scored.exit_code == 0, scored.output + scored.stderr
    history = client.get_metric_history(child, "eval/photo2labels/per_pixel_acc")
    assert len({(m.step, m.value) for m in history}) == 1  # the same score, computed again, kept once


def test_a_sweep_on_ray_through_the_server(server, synth_dir, tmp_path):
    pytest.importorskip("ray", reason='Ray is installed by the test extra (pip install -e ".[test]")')
    spec = tmp_path / "shared-ray.yaml"
    spec.write_text(SPEC.format(name="shared-ray"))
    sweep = subprocess.run([str(CGBENCH), "sweep", str(spec), "--jobs", "2", "--executor", "ray", "--data",
                            str(synth_dir), "--tracking-uri", server.uri, "--no-progress"], capture_output=True,
                           text=True, cwd=tmp_path, timeout=HANG_SECONDS)  # a local Ray cluster, started for it
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    assert "as Ray tasks" in sweep.stdout
    _sweep_children(MlflowClient(server.uri), "shared-ray", sweep.stdout)
