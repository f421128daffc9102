"""Sweeps on a real Ray cluster of two nodes on this machine (`ray start --head` and a second
`ray start --address` joining it, each with its own resources), started and stopped here; one
worker process is killed mid-child and every child's history still holds each step once."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from conftest import HANG_SECONDS, assert_one_line_error, wait_until
from cgbench.cli import main
from cgbench.distributed import free_port
from cgbench.tracking import Lease

pytest.importorskip("ray", reason='Ray is installed by the test extra (pip install -e ".[test]")')

RAY = Path(sys.executable).with_name("ray")
TRAIN_KEYS = ("loss/D_Y", "loss/G_gan", "loss/cycle_forward", "lr", "perf/sec_per_iter")
ITERS = 40
SPEC = f"""\
name: on-ray
preset: tiny
seeds: [0, 1]
evaluators: [seg]
set: {{iters: {ITERS}, checkpoint_every: 5}}
rows:
  - {{row: cyclegan, ablation: cyclegan}}
"""


class Node:
    """One `ray start --block` in its own session and temp folder; stopped by signalling its
    session (every Ray process it started is in it), then any straggler whose command line
    names its temp folder."""

    def __init__(self, folder: Path, args: list[str], env: dict[str, str]):
        self.folder = folder
        self.log = folder / "node.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats", *args], env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_started(self) -> None:
        wait_until(lambda: "Ray runtime started" in self.log.read_text(), self.proc, "Ray node started",
                   output=lambda: self.log.read_text()[-3000:])

    def stop(self) -> None:
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):  # nothing of the node need be kept
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
        for pid in _pids_naming(str(self.folder)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _pids_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module")
def cluster():
    """A head node and a second node on 127.0.0.1, one CPU each; its address and environment
    (token authentication with a token of its own)."""
    root = Path(tempfile.mkdtemp(prefix="cgray", dir="/tmp"))  # short: Ray's socket paths must fit
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    address = f"127.0.0.1:{free_port()}"
    nodes = []
    try:
        (root / "head").mkdir()
        nodes.append(Node(root / "head", ["--head", "--node-ip-address", "127.0.0.1", "--port", address.split(":")[1],
                                          "--num-cpus", "1", "--resources", json.dumps({"head_node": 1}),
                                          "--include-dashboard", "false", "--temp-dir", str(root / "head")], env))
        nodes[0].wait_started()
        (root / "second").mkdir()
        nodes.append(Node(root / "second", ["--address", address, "--node-ip-address", "127.0.0.1",
                                            "--num-cpus", "1", "--resources", json.dumps({"second_node": 1})], env))
        nodes[1].wait_started()
        yield address, env
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


def _children(client: MlflowClient, experiment: str = "on-ray") -> list:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return [r for r in runs if r.data.tags.get("cgbench.row") == "cyclegan"]


def _last_step(client: MlflowClient, run_id: str) -> int:
    return max((m.step for m in client.get_metric_history(run_id, "loss/D_Y")), default=0)


def test_a_worker_killed_mid_child_loses_no_step(cluster, synth_dir, tmp_path):
    address, env = cluster
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = tmp_path / "on-ray.yaml"
    spec.write_text(SPEC)
    args = [str(Path(sys.executable).with_name("cgbench")), "sweep", str(spec), "--executor", "ray", "--ray-address",
            address, "--jobs", "2", "--data", str(synth_dir), "--tracking-uri", uri, "--no-progress"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = MlflowClient(uri)
    try:
        victim = _wait_for_a_child_at_step(client, proc, 10)
        holder = Lease(client, f"run/{victim}").holder()  # the Ray worker process training it
        assert holder is not None and holder.pid != proc.pid
        os.kill(holder.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=HANG_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "Running 2 runs as Ray tasks" in out and "2 finished, 0 failed" in out, out
    children = _children(client)
    assert sorted(r.data.tags["cgbench.seed"] for r in children) == ["0", "1"]  # the killed child resumed its run
    assert victim in {r.info.run_id for r in children}
    parent = {r.data.tags["mlflow.parentRunId"] for r in children}
    assert len(parent) == 1 and client.get_run(parent.pop()).info.status == "FINISHED"
    for run in children:
        assert run.info.status == "FINISHED" and "eval/photo2labels/per_pixel_acc" in run.data.metrics
        for key in TRAIN_KEYS:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == list(range(1, ITERS + 1)), (key, run.info.run_id)

    again = CliRunner().invoke(main, args[1:])
    assert again.exit_code == 0, again.output + again.stderr
    assert "0 to do, 2 already finished" in again.output
    assert len(_children(client)) == 2  # re-running trains nothing new


def _wait_for_a_child_at_step(client: MlflowClient, proc: subprocess.Popen, step: int) -> str:
    def child_at_step() -> str | None:
        return next((run.info.run_id for run in _children(client)
                     if run.info.status == "RUNNING" and _last_step(client, run.info.run_id) >= step), None)

    return wait_until(child_at_step, proc, f"a child at step {step}", output=proc.stdout.read)


def test_ray_address_without_the_ray_executor_is_one_line(synth_dir, tracking_uri, tmp_path):
    spec = tmp_path / "on-ray.yaml"
    spec.write_text(SPEC)
    out = CliRunner().invoke(main, ["sweep", str(spec), "--ray-address", "auto", "--data", str(synth_dir),
                                    "--tracking-uri", tracking_uri])
    assert_one_line_error(out, "--ray-address needs --executor ray")
    assert not re.search(r"parent run", out.stdout)
