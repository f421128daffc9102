"""Faults and bad input through the real CLI: kill -9 and resume, Ctrl-C, NaN, one-line errors."""

from __future__ import annotations

import math
import pickle
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from conftest import HANG_SECONDS, assert_one_line_error, run_cli, wait_until
from cgbench import errors
from cgbench.cli import main
from cgbench.cli.common import handle_errors
from cgbench.config import resolve
from cgbench.methods.cyclegan import CycleGAN
from cgbench.training import train

LOSS_KEYS = [f"loss/{t}" for t in CycleGAN.terms]


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("cgbench")
    return subprocess.Popen([str(exe), *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"})


def _run_id(proc: subprocess.Popen) -> str:
    for line in proc.stdout:
        if match := re.search(r"MLflow run ([0-9a-f]{32})", line):
            return match.group(1)
    raise AssertionError(proc.stderr.read())


def _wait_for(path_glob, root: Path, proc: subprocess.Popen) -> None:
    wait_until(lambda: any(root.glob(path_glob)), proc, f"{path_glob} was written")


def _steps_and_values(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in LOSS_KEYS}


TRAIN_ARGS = ["--preset", "tiny", "--iters", "120", "--set", "checkpoint_every=5", "--experiment", "t",
              "--no-progress"]


def test_resume_after_sigkill_records_every_iteration_once(synth_dir, tracking_uri, tmp_path):
    proc = _start(["run", "--data", str(synth_dir), "--tracking-uri", tracking_uri, *TRAIN_ARGS], tmp_path)
    run_id = _run_id(proc)
    _wait_for(f"mlruns/*/{run_id}/artifacts/checkpoints/step_00000015.pt", tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    client = MlflowClient(tracking_uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # SIGKILL leaves no chance to say otherwise

    done = run_cli("run", "--resume", run_id, "--tracking-uri", tracking_uri, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "Resuming run" in done.stdout
    assert client.get_run(run_id).info.status == "FINISHED"
    resumed = _steps_and_values(client, run_id)
    for key, history in resumed.items():
        assert [s for s, _ in history] == list(range(1, 121)), key

    # The resumed run is the run that was never interrupted: same seed, same numbers.
    config = resolve("tiny", data=str(synth_dir), iters=120, sets={"checkpoint_every": 5})
    reference = train(config, tracking_uri=tracking_uri, experiment="t", progress=False, echo=lambda *_: None)
    assert _steps_and_values(client, reference.run_id) == resumed


def test_ctrl_c_checkpoints_marks_killed_and_resumes(synth_dir, tracking_uri, tmp_path):
    proc = _start(["run", "--data", str(synth_dir), "--tracking-uri", tracking_uri, *TRAIN_ARGS], tmp_path)
    run_id = _run_id(proc)
    _wait_for(f"mlruns/*/{run_id}/artifacts/checkpoints/step_00000005.pt", tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=HANG_SECONDS)
    assert proc.returncode == 130
    assert f"cgbench run --resume {run_id}" in err and "Traceback" not in err
    client = MlflowClient(tracking_uri)
    assert client.get_run(run_id).info.status == "KILLED"
    done = run_cli("run", "--resume", run_id, "--tracking-uri", tracking_uri, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert [m.step for m in client.get_metric_history(run_id, "loss/D_Y")] == list(range(1, 121))


def test_non_finite_loss_fails_the_run_naming_step_and_term(synth_dir, tracking_uri):
    out = run_cli("run", "--data", str(synth_dir), "--tracking-uri", tracking_uri, "--preset", "tiny",
                  "--iters", "30", "--set", "lr=1e30", "--no-progress")
    assert out.returncode == 1, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert re.search(r"loss term '\w+' is (nan|inf|-inf) at iteration \d+", line), out.stderr
    client = MlflowClient(tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("cgbench").experiment_id])[0]
    assert run.info.status == "FAILED" and "at iteration" in run.data.tags["cgbench.failure"]


def _corrupt_copy(synth_dir: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "corrupt"
    shutil.copytree(synth_dir, copy)
    victim = sorted((copy / "leftImg8bit" / "train").rglob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:40])
    return copy


@pytest.mark.parametrize(
    "case, args, fragments",
    [
        ("missing folder", ["--data", "{tmp}/nope"], ["does not exist"]),
        ("no layout", ["--data", "{tmp}"], ["leftImg8bit"]),
        ("corrupt image", ["--data", "{corrupt}"], ["leftImg8bit.png"]),
        ("unknown ablation", ["--data", "{synth}", "--ablation", "no-gan"], ["valid ablations", "no-cycle"]),
        ("unknown key", ["--data", "{synth}", "--set", "lamda=1"], ["unknown config key 'lamda'", "lambda_cycle"]),
        ("image too small", ["--data", "{synth}", "--set", "image_size=16", "--set", "load_size=16"],
         ["image_size 16"]),
        ("resume unknown run", ["--resume", "0" * 32], ["no run"]),
    ],
)
def test_bad_input_is_one_line_exit_2(case, args, fragments, synth_dir, tracking_uri, tmp_path):
    corrupt = _corrupt_copy(synth_dir, tmp_path) if case == "corrupt image" else None
    args = [a.format(tmp=tmp_path, synth=synth_dir, corrupt=corrupt) for a in args]
    preset = [] if "--resume" in args else ["--preset", "tiny"]
    out = CliRunner().invoke(main, ["run", *preset, *args, "--tracking-uri", tracking_uri, "--no-progress"])
    assert_one_line_error(out, *fragments)
    if case == "resume unknown run":
        return
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("cgbench")
    assert experiment is None or not client.search_runs([experiment.experiment_id])  # nothing half-recorded


KNOWN_ERRORS = [
    (errors.DataError("no images"), 2), (errors.ConfigError("unknown key"), 2), (errors.LeaseHeld("held"), 2),
    (errors.LeaseLost("taken over"), 1), (errors.StoreUnavailable("the store is away"), 1),
    (errors.NonFiniteLoss(3, "G", math.inf), 1), (errors.RanksDiverged(2, ["a" * 64, "b" * 64]), 1),
    (errors.Interrupted("0" * 32, 4), 130), (errors.SweepInterrupted("sweep interrupted"), 130),
]


def _error_id(value) -> str:
    return type(value).__name__ if isinstance(value, Exception) else str(value)


@pytest.mark.parametrize("exc, status", KNOWN_ERRORS, ids=_error_id)
def test_each_known_error_declares_the_status_the_command_ends_with(exc, status, capsys):
    @handle_errors
    def command():
        raise exc

    with pytest.raises(SystemExit) as stop:
        command()
    assert exc.exit_code == status == stop.value.code
    assert capsys.readouterr().err == f"error: {exc}\n"


@pytest.mark.parametrize("exc, status", KNOWN_ERRORS, ids=_error_id)
def test_known_errors_cross_process_boundaries_whole(exc, status):
    again = pickle.loads(pickle.dumps(exc))  # how a sweep worker's error reaches the sweep
    assert type(again) is type(exc) and str(again) == str(exc) and vars(again) == vars(exc)
