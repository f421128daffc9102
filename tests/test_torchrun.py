"""Multi-node torchrun on loopback: two launchers ("nodes") of `torchrun --nnodes 2 --nproc-per-node 1
--rdzv-backend c10d -m cgbench run ...` with gloo make one MLflow run, written by the global rank 0
alone, with each step once and identical weights on both nodes; interrupted on both nodes, the
same command with --resume continues it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

from conftest import HANG_SECONDS
from cgbench.distributed import free_port

TRAIN_KEYS = ("loss/D_Y", "loss/G_gan", "loss/cycle_forward", "lr", "perf/sec_per_iter")
ITERS = 40


def _nodes(args: list[str], cwd: Path) -> list[subprocess.Popen]:
    """Two torchrun launchers meeting at one c10d rendezvous on 127.0.0.1, each in its own session
    (as on two machines, where each terminal's Ctrl-C reaches its own node only)."""
    endpoint = f"127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend",
           "c10d", "--rdzv-endpoint", endpoint, "-m", "cgbench", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return [subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True) for _ in range(2)]


def _finish(nodes: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    done = []
    for node in nodes:
        out, err = node.communicate(timeout=HANG_SECONDS)
        done.append((node.returncode, out, err))
    return done


def _runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("torchrun")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _wait_for_step(client: MlflowClient, nodes: list[subprocess.Popen], step: int) -> str:
    deadline = time.monotonic() + HANG_SECONDS
    while True:
        for run in _runs(client):
            if max((m.step for m in client.get_metric_history(run.info.run_id, "loss/D_Y")), default=0) >= step:
                return run.info.run_id
        try:
            status = nodes[0].wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            assert time.monotonic() < deadline, f"step {step} not recorded"
            continue
        raise AssertionError(f"a node ended (status {status}) before step {step}: {nodes[0].stderr.read()}")


def _assert_each_step_once(client: MlflowClient, run_id: str, last: int) -> None:
    for key in TRAIN_KEYS:
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == list(range(1, last + 1)), (key, len(steps), last)


def test_two_nodes_make_one_run_with_identical_weights_and_resume_after_both_are_interrupted(synth_dir, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    nodes = _nodes(["run", "--data", str(synth_dir), "--tracking-uri", uri, "--preset", "tiny", "--iters", str(ITERS),
                    "--set", "checkpoint_every=5", "--experiment", "torchrun", "--no-progress"], tmp_path)
    try:
        run_id = _wait_for_step(client, nodes, 10)
        for node in nodes:  # Ctrl-C on each machine
            os.killpg(node.pid, signal.SIGINT)
        stopped = _finish(nodes)
        run = client.get_run(run_id)
        assert run.info.status == "KILLED", stopped
        errors = "".join(err for _, _, err in stopped)
        assert f"cgbench run --resume {run_id}" in errors, errors
        last = max(m.step for m in client.get_metric_history(run_id, "loss/D_Y"))
        assert 10 <= last < ITERS
        _assert_each_step_once(client, run_id, last)  # flushed where both stopped

        nodes = _nodes(["run", "--resume", run_id, "--tracking-uri", uri, "--no-progress"], tmp_path)
        resumed = _finish(nodes)
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.communicate()
    assert [status for status, _, _ in resumed] == [0, 0], resumed
    said = [out for _, out, _ in resumed if "Resuming run" in out]
    assert len(said) == 1 and f"Resuming run {run_id} at iteration {last}" in said[0]  # the global rank 0 alone
    assert [r.info.run_id for r in _runs(client)] == [run_id]  # one run; the other node wrote none
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["cgbench.world_size"] == "2"
    digests = run.data.tags["cgbench.ddp_weight_digests"].split(",")
    assert len(digests) == 2 and digests[0] == digests[1]  # both nodes hold the same weights
    _assert_each_step_once(client, run_id, ITERS)
