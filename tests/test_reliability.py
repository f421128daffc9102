"""Nothing recorded is lost, duplicated, or scored against the wrong data (issue 17), through the
real CLI: real processes and signals, concurrent commands on one real sqlite store, and every
metric history counted."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from PIL import Image

from conftest import assert_one_line_error
from cgbench.cli import main
from cgbench.config import resolve
from cgbench.data.layouts import load_split
from cgbench.errors import DataError
from cgbench.scoring import load_val_split
from cgbench.training import train

CGBENCH = Path(sys.executable).with_name("cgbench")
TRAIN_KEYS = ("loss/D_Y", "loss/G_gan", "loss/cycle_forward", "lr", "perf/sec_per_iter")
DEADLINE = 420  # seconds any one wait may take on a loaded machine


_STARTED: list[subprocess.Popen] = []


def _popen(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    proc = subprocess.Popen([str(CGBENCH), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kwargs)
    _STARTED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_process_left_behind():
    """A test that fails half-way leaves none of its commands running."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _pause(proc: subprocess.Popen | None = None) -> None:
    """A tenth of a second spent waiting on ``proc`` (or on nothing) between two polls."""
    if proc is not None:
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass
    else:
        threading.Event().wait(0.1)


def _until(condition, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        _pause(proc)


def _run_id(proc: subprocess.Popen) -> str:
    for line in proc.stdout:
        if match := re.search(r"MLflow run ([0-9a-f]{32})", line):
            return match.group(1)
    raise AssertionError(proc.stderr.read())


def _last_step(client: MlflowClient, run_id: str) -> int:
    return max((m.step for m in client.get_metric_history(run_id, "loss/D_Y")), default=0)


def _assert_each_step_once(client: MlflowClient, run_id: str, last: int) -> None:
    """Every training metric of the run holds steps 1..last, each exactly once."""
    for key in TRAIN_KEYS:
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == list(range(1, last + 1)), (key, len(steps), last)


def _train_args(synth_dir: Path, tracking_uri: str, iters: int, *extra: str) -> list[str]:
    return ["run", "--data", str(synth_dir), "--tracking-uri", tracking_uri, "--preset", "tiny", "--iters", str(iters),
            "--set", "checkpoint_every=5", "--experiment", "rel", "--no-progress", *extra]


# --- 4. Ctrl-C twice -------------------------------------------------------------------------


def test_double_ctrl_c_loses_no_step(synth_dir, tracking_uri, tmp_path):
    proc = _popen(_train_args(synth_dir, tracking_uri, 60), tmp_path)
    run_id = _run_id(proc)
    client = MlflowClient(tracking_uri)
    _until(lambda: _last_step(client, run_id) >= 10, "step 10 is recorded", proc)
    os.kill(proc.pid, signal.SIGINT)  # a user pressing twice
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted at iteration") and "Traceback" not in err
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    stopped = int(re.search(r"iteration (\d+)", err).group(1))
    _assert_each_step_once(client, run_id, stopped)  # flushed up to where it stopped, and checkpointed there
    folder = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoints"
    names = sorted(p.name for p in folder.iterdir())
    assert all(re.fullmatch(r"step_\d{8}\.pt", n) for n in names) and names[-1] == f"step_{stopped:08d}.pt", names

    done = subprocess.run([str(CGBENCH), "run", "--resume", run_id, "--tracking-uri", tracking_uri, "--no-progress"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert client.get_run(run_id).info.status == "FINISHED"
    _assert_each_step_once(client, run_id, 60)

    # Where the stop landed changes nothing: the run is the run that was never interrupted.
    config = resolve("tiny", data=str(synth_dir), iters=60, sets={"checkpoint_every": 5})
    reference = train(config, tracking_uri=tracking_uri, experiment="ref", progress=False, echo=lambda *_: None)
    for key in TRAIN_KEYS[:3]:
        assert _values(client, run_id, key) == _values(client, reference.run_id, key), key


def _values(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


# --- 6. one writer per run ---------------------------------------------------------------------


def test_a_second_writer_is_refused_and_a_dead_ones_lease_is_taken_over(synth_dir, tracking_uri, tmp_path):
    first = _popen(_train_args(synth_dir, tracking_uri, 2000), tmp_path)
    run_id = _run_id(first)
    client = MlflowClient(tracking_uri)
    _until(lambda: _last_step(client, run_id) >= 10, "step 10 is recorded", first)
    resume = ["run", "--resume", run_id, "--tracking-uri", tracking_uri, "--no-progress"]
    second = CliRunner().invoke(main, resume)
    assert_one_line_error(second, f"run {run_id} is being written by another process", f"process {first.pid}")
    assert first.poll() is None and client.get_run(run_id).info.status == "RUNNING"

    first.kill()  # a writer that dies leaves its lease behind ...
    first.communicate()
    racers = [_popen(resume, tmp_path) for _ in range(2)]  # ... and of two taking it over at once, one wins
    _until(lambda: any(p.poll() is not None for p in racers), "one of two resumes ends")
    loser = next(p for p in racers if p.poll() is not None)
    winner = next(p for p in racers if p is not loser)
    _, err = loser.communicate()
    assert loser.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert "is being written by another process" in err
    reached = _last_step(client, run_id)
    _until(lambda: _last_step(client, run_id) > reached + 5, "the winner records more steps", winner)
    winner.send_signal(signal.SIGINT)
    _, err = winner.communicate(timeout=DEADLINE)
    assert winner.returncode == 130, err
    stopped = int(re.search(r"iteration (\d+)", err).group(1))
    assert client.get_run(run_id).info.status == "KILLED"
    _assert_each_step_once(client, run_id, stopped)


# --- 9. resuming what is not a training run; damaged checkpoints ------------------------------


def test_resume_refuses_a_run_that_is_not_a_training_run(tracking_uri):
    from cgbench.tracking import RunTracker

    fcn = RunTracker.create(tracking_uri, "rel", "fcn-fcn8s-32px-seed0", {"cgbench.method": "fcn"})
    fcn.end("FINISHED")
    out = CliRunner().invoke(main, ["run", "--resume", fcn.run_id, "--tracking-uri", tracking_uri])
    assert_one_line_error(out, f"run {fcn.run_id} is not a training run", "cgbench.method='fcn'")
    assert MlflowClient(tracking_uri).get_run(fcn.run_id).info.status == "FINISHED"  # untouched


def test_a_checkpoint_of_garbage_bytes_falls_back_to_the_previous_one(synth_dir, tracking_uri, tmp_path):
    out = CliRunner().invoke(main, _train_args(synth_dir, tracking_uri, 10))
    assert out.exit_code == 0, out.output + out.stderr
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("rel").experiment_id])
    folder = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoints"
    newest = folder / "step_00000010.pt"
    newest.write_bytes(os.urandom(newest.stat().st_size))  # not cut short: damaged
    client.set_terminated(run.info.run_id, "KILLED")
    out = CliRunner().invoke(main, ["run", "--resume", run.info.run_id, "--tracking-uri", tracking_uri,
                                    "--no-progress"])
    assert out.exit_code == 0, out.output + out.stderr
    assert "Resuming run" in out.output and "at iteration 5 of 10" in out.output
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    _assert_each_step_once(client, run.info.run_id, 10)


# --- 5, 7. sweeps interrupted, and two sweeps of one spec at once ------------------------------

SPEC = """\
name: rel
preset: tiny
seeds: [0, 1]
evaluators: {evaluators}
set: {{iters: {iters}, checkpoint_every: 5}}
rows:
  - {{row: cyclegan, ablation: cyclegan}}
"""


def _spec(tmp_path: Path, iters: int, evaluators: str = "[seg]") -> Path:
    path = tmp_path / "rel.yaml"
    path.write_text(SPEC.format(iters=iters, evaluators=evaluators))
    return path


def _sweep_runs(client: MlflowClient) -> dict[str, list]:
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    by_method: dict[str, list] = {}
    for run in runs:
        by_method.setdefault(run.data.tags.get("cgbench.method", ""), []).append(run)
    return by_method


def test_ctrl_c_to_a_parallel_sweep_checkpoints_every_child(synth_dir, tracking_uri, tmp_path):
    # 400 iterations: far more than one child trains while the second worker starts, so both are in flight
    args = ["sweep", str(_spec(tmp_path, 400)), "--jobs", "2", "--data", str(synth_dir), "--tracking-uri",
            tracking_uri, "--no-progress"]
    proc = _popen(args, tmp_path, start_new_session=True)  # its own process group, as a terminal's
    client = MlflowClient(tracking_uri)

    def children_started() -> bool:
        children = _sweep_runs(client).get("cyclegan", [])
        return len(children) == 2 and all(r.info.status == "RUNNING" and _last_step(client, r.info.run_id) >= 10
                                          for r in children)

    _until(children_started, "both children record step 10", proc)
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "BrokenProcessPool" not in err, err
    runs = _sweep_runs(client)
    assert [r.info.status for r in runs["sweep"]] == ["KILLED"]
    assert sorted(r.info.status for r in runs["cyclegan"]) == ["KILLED", "KILLED"]

    again = subprocess.run([str(CGBENCH), *args], capture_output=True, text=True, cwd=tmp_path, timeout=DEADLINE)
    assert again.returncode == 0, again.stdout + again.stderr
    runs = _sweep_runs(client)
    assert len(runs["sweep"]) == 1 and len(runs["cyclegan"]) == 2
    for run in runs["cyclegan"]:
        assert client.get_run(run.info.run_id).info.status == "FINISHED"
        _assert_each_step_once(client, run.info.run_id, 400)


def test_a_stopped_sweep_starts_none_of_its_queued_children(synth_dir, tracking_uri, tmp_path):
    """SIGTERM to the process group (as a job scheduler stops a job) while two of four children
    train: the two in flight checkpoint, the two waiting never start (one of them already handed to
    the workers' call queue, which cancelling the pool's futures does not reach), and the sweep ends
    in one line (no helper process killed under it)."""
    spec = _spec(tmp_path, 400)
    spec.write_text(spec.read_text().replace("seeds: [0, 1]", "seeds: [0, 1, 2, 3]"))
    args = ["sweep", str(spec), "--jobs", "2", "--data", str(synth_dir), "--tracking-uri", tracking_uri,
            "--no-progress"]
    proc = _popen(args, tmp_path, start_new_session=True)
    client = MlflowClient(tracking_uri)

    def two_children_train() -> bool:
        children = _sweep_runs(client).get("cyclegan", [])
        return len(children) == 2 and all(_last_step(client, r.info.run_id) >= 10 for r in children)

    _until(two_children_train, "two children record step 10", proc)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("error: sweep interrupted"), err
    runs = _sweep_runs(client)
    assert [r.info.status for r in runs["sweep"]] == ["KILLED"]
    assert sorted(r.info.status for r in runs["cyclegan"]) == ["KILLED", "KILLED"]


def test_ctrl_c_to_a_sweep_with_an_idle_worker_is_one_line(synth_dir, tracking_uri, tmp_path):
    """A worker whose child is done waits for work: Ctrl-C to the process group is the sweep's to
    handle, not a KeyboardInterrupt traceback in that worker."""
    spec = _spec(tmp_path, 400)
    spec.write_text(spec.read_text().replace("seeds: [0, 1]", "seeds: [0]").replace(
        "rows:\n", "rows:\n  - {row: quick, ablation: cyclegan, iters: 5}\n"))
    args = ["sweep", str(spec), "--jobs", "2", "--data", str(synth_dir), "--tracking-uri", tracking_uri,
            "--no-progress"]
    proc = _popen(args, tmp_path, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: [lines.append(line) for line in proc.stdout], daemon=True)
    reader.start()
    client = MlflowClient(tracking_uri)

    def quick_returned_other_training() -> bool:  # the sweep printed the quick child's result: its worker idles
        if not any("quick seed 0: done" in line for line in lines):
            return False
        (other,) = [r for r in _sweep_runs(client)["cyclegan"] if r.data.tags["cgbench.row"] == "cyclegan"]
        return other.info.status == "RUNNING" and _last_step(client, other.info.run_id) >= 10

    _until(quick_returned_other_training, "the quick child is done while the other trains", proc)
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=DEADLINE) == 130
    reader.join(timeout=DEADLINE)
    err = proc.stderr.read()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1].startswith("error: sweep interrupted"), err
    status = {r.data.tags["cgbench.row"]: r.info.status for r in _sweep_runs(client)["cyclegan"]}
    assert status == {"quick": "FINISHED", "cyclegan": "KILLED"}


def test_two_sweeps_of_one_spec_at_once_train_each_child_and_the_fcn_once(synth_dir, tracking_uri, tmp_path):
    args = ["sweep", str(_spec(tmp_path, 6, "[fcn, seg]")), "--data", str(synth_dir), "--tracking-uri", tracking_uri,
            "--no-progress"]
    client = MlflowClient(tracking_uri)
    client.search_experiments()  # the store exists before the race (its creation is tested below)
    sweeps = [_popen(args, tmp_path) for _ in range(2)]
    for proc in sweeps:
        out, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, out + err
    runs = _sweep_runs(client)
    assert len(runs["sweep"]) == 1 and len(runs["fcn"]) == 1
    assert sorted(r.data.tags["cgbench.seed"] for r in runs["cyclegan"]) == ["0", "1"]
    null_rows = [r.data.tags["cgbench.row"] for r in runs["null"]]
    assert len(null_rows) == 5 == len(set(null_rows))  # each null row once
    for run in runs["cyclegan"]:
        assert run.info.status == "FINISHED" and "eval/labels2photo/per_pixel_acc" in run.data.metrics
        _assert_each_step_once(client, run.info.run_id, 6)
    from cgbench.report import build_report

    report = build_report(tracking_uri, sweep_run_id=runs["sweep"][0].info.run_id, tables="4", out_dir=None,
                          log_to_mlflow=False, figures=False)
    assert next(r for r in report.tables[0].rows if r.key == "cyclegan").n == 2  # two seeds, no copies


def test_two_sweeps_with_two_jobs_each_on_one_sqlite_file_lose_nothing(synth_dir, tracking_uri, tmp_path):
    """Four training processes and two sweeps writing one sqlite file at once: none dies of
    "database is locked" (a write that finds the file locked waits for it: PatientClient)."""
    other = tmp_path / "other.yaml"
    other.write_text(SPEC.replace("name: rel", "name: rel-other").format(iters=10, evaluators="[seg]"))
    common = ["--jobs", "2", "--data", str(synth_dir), "--tracking-uri", tracking_uri, "--no-progress"]
    client = MlflowClient(tracking_uri)
    client.search_experiments()  # the store exists before the race (its creation is tested below)
    proc = _popen(["sweep", str(other), *common], tmp_path)
    here = CliRunner().invoke(main, ["sweep", str(_spec(tmp_path, 10)), *common])  # meanwhile, in this process
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0 and here.exit_code == 0, (out + err, here.output + here.stderr)
    assert "locked" not in err + here.stderr
    runs = _sweep_runs(client)
    assert len(runs["sweep"]) == 2 and len(runs["cyclegan"]) == 4
    for run in runs["cyclegan"]:
        assert run.info.status == "FINISHED" and "eval/photo2labels/per_pixel_acc" in run.data.metrics
        _assert_each_step_once(client, run.info.run_id, 10)


# --- 8. two first commands on a new store ------------------------------------------------------

FIRST_COMMAND = textwrap.dedent("""\
    import sys, threading
    from pathlib import Path
    from mlflow import MlflowClient
    from cgbench.stores import checked_uri, ensure_sqlite_store
    ready, go, uri = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    ready.touch()
    while not go.exists():  # both processes start creating the store at the same moment
        threading.Event().wait(0.005)
    uri = checked_uri(uri)  # what cgbench.tracking.client_for does, without importing torch
    ensure_sqlite_store(uri, None)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("first")
    try:
        experiment_id = client.create_experiment("first") if experiment is None else experiment.experiment_id
    except Exception:  # the other process created it first
        experiment_id = client.get_experiment_by_name("first").experiment_id
    client.set_terminated(client.create_run(experiment_id).info.run_id)
    print("ok")
""")


def test_two_first_commands_on_a_new_store_both_succeed(tmp_path):
    for attempt in range(3):
        folder = tmp_path / f"store{attempt}"
        folder.mkdir()
        uri = f"sqlite:///{folder}/mlflow.db"
        go = folder / "go"
        procs = [subprocess.Popen([sys.executable, "-c", FIRST_COMMAND, str(folder / f"ready{i}"), str(go), uri],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
        _until(lambda: all((folder / f"ready{i}").exists() for i in range(2)), "both processes are ready")
        go.touch()
        for proc in procs:
            out, err = proc.communicate(timeout=DEADLINE)
            assert proc.returncode == 0 and out.strip() == "ok", err
        client = MlflowClient(uri)
        (experiment,) = [e for e in client.search_experiments() if e.name == "first"]
        assert len(client.search_runs([experiment.experiment_id])) == 2
        assert not list(folder.glob(".mlflow.db.creating-*"))


# --- 1. the val split a run is scored on ------------------------------------------------------


def test_eval_scores_the_runs_own_val_split_and_refuses_another(synth_dir, tracking_uri, tmp_path):
    p, q = tmp_path / "P", tmp_path / "Q"
    shutil.copytree(synth_dir, p)
    shutil.copytree(synth_dir, q)
    label = sorted((q / "gtFine" / "val").rglob("*_labelIds.png"))[0]
    Image.new("L", Image.open(label).size, 7).save(label)  # Q's val labels differ; the training split does not
    for data in (p, q):
        out = CliRunner().invoke(main, _train_args(data, tracking_uri, 2))
        assert out.exit_code == 0, out.output + out.stderr
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("rel").experiment_id],
                              order_by=["attributes.start_time ASC"])
    q_run = runs[1].info.run_id
    q_val = load_split(q, "val").digest
    assert runs[1].data.tags["cgbench.val_digest"] == q_val != runs[0].data.tags["cgbench.val_digest"]

    scored = CliRunner().invoke(main, ["eval", "--run", q_run, "--metric", "seg", "--tracking-uri", tracking_uri,
                                       "--no-progress"])
    assert scored.exit_code == 0, scored.output + scored.stderr
    assert f"val images of {q}" in scored.output
    scores = json.loads(Path(client.download_artifacts(q_run, "eval/photo2labels/scores.json", str(tmp_path)))
                        .read_text())
    assert scores["val_digest"] == q_val and scores["data_root"] == str(q)

    p_val = load_split(p, "val").digest
    refused = CliRunner().invoke(main, ["eval", "--run", q_run, "--data", str(p), "--metric", "seg",
                                        "--tracking-uri", tracking_uri])
    assert_one_line_error(refused, p_val, q_val, "--allow-other-val")
    allowed = CliRunner().invoke(main, ["eval", "--run", q_run, "--data", str(p), "--allow-other-val", "--metric",
                                        "seg", "--tracking-uri", tracking_uri, "--no-progress"])
    assert allowed.exit_code == 0, allowed.output + allowed.stderr
    tags = client.get_run(q_run).data.tags
    assert tags["cgbench.eval.allow_other_val"] == "true" and tags["cgbench.eval.val_digest"] == p_val


# --- 2. labels of another size than their photos ----------------------------------------------


def test_labels_of_another_size_than_their_photos_are_refused_naming_the_file(synth_dir, tmp_path):
    bad = shutil.copytree(synth_dir, tmp_path / "bad")
    labels = sorted((bad / "gtFine" / "val").rglob("*_labelIds.png"))
    for label in labels:  # every val label 40x30 against 64x32 photos
        Image.open(label).resize((40, 30)).save(label)
    with pytest.raises(DataError, match=r"is 40x30 but its photo .* is 64x32") as err:
        load_val_split(bad, 32)
    assert str(labels[0]) in str(err.value) and "pass a size" not in str(err.value)

    one = shutil.copytree(synth_dir, tmp_path / "one")
    label = sorted((one / "gtFine" / "train").rglob("*_labelIds.png"))[3]
    Image.open(label).resize((40, 30)).save(label)
    out = CliRunner().invoke(main, ["run", "--data", str(one), "--preset", "tiny", "--tracking-uri",
                                    f"sqlite:///{tmp_path}/m.db", "--no-progress"])
    assert_one_line_error(out, str(label), "40x30", "re-export it at 64x32")


# --- 3. seeds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["spec", "option"])
def test_duplicate_seeds_are_a_spec_error(where, synth_dir, tracking_uri, tmp_path):
    spec = _spec(tmp_path, 4)
    if where == "spec":
        spec.write_text(spec.read_text().replace("seeds: [0, 1]", "seeds: [0, 0]"))
    extra = ["--seeds", "1,0,1"] if where == "option" else []
    out = CliRunner().invoke(main, ["sweep", str(spec), *extra, "--data", str(synth_dir), "--tracking-uri",
                                    tracking_uri])
    assert_one_line_error(out, "more than once", "give each seed once")
    assert not (tmp_path / "mlruns").exists()


def test_the_report_counts_a_row_and_seed_once(tracking_uri, tmp_path):
    from cgbench.report import build_report
    from cgbench.tracking import RunTracker

    for seed, value in ((0, 0.5), (0, 0.5), (1, 0.7)):  # seed 0 twice: one seed, not two
        tracker = RunTracker.create(tracking_uri, "dups", "r", {
            "cgbench.method": "cyclegan", "cgbench.row": "cyclegan", "cgbench.seed": str(seed),
            "cgbench.dataset": "synthcity", "cgbench.dataset_digest": "d" * 16, "cgbench.preset": "tiny"})
        tracker.log_metrics({f"eval/photo2labels/{m}": value for m in ("per_pixel_acc", "per_class_acc",
                                                                        "class_iou")}, 1)
        tracker.end()
    report = build_report(tracking_uri, experiment="dups", tables="5", out_dir=None, log_to_mlflow=False,
                          figures=False)
    row = next(r for r in report.tables[0].rows if r.key == "cyclegan")
    assert row.n == 2 and row.values["per_pixel_acc"] == [0.5, 0.7]
    assert any("repeat a row and seed" in note for note in report.meta.notes)


# --- 10, 11. one line and exit 2 -------------------------------------------------------------


@pytest.mark.parametrize("args, fragments", [
    (["--set", "lr=-1"], ["lr must be > 0"]),
    (["--set", "lr=nan"], ["lr must be a finite number"]),
    (["--set", "beta1=2"], ["beta1 must be in [0, 1)"]),
    (["--set", "n_layers_d=9"], ["n_layers_d 9", "n_layers_d <= 3"]),
    (["--seed", "-1"], ["seed must be in [0, "]),
    (["--set", "lambda_cycle=nan"], ["lambda_cycle must be a finite number"]),
    (["--epochs", "-1"], ["--epochs must be > 0"]),
    (["--epochs", "nan"], ["--epochs must be > 0"]),
    (["--iters", "0"], ["--iters must be > 0"]),
    (["--iters", "-5"], ["--iters must be > 0"]),
    (["--set", "epochs=-1"], ["epochs must be >= 0"]),
    (["--config", "{latin1}"], ["is not UTF-8", "save it as UTF-8"]),
])
def test_every_config_value_out_of_range_is_one_line(args, fragments, synth_dir, tracking_uri, tmp_path):
    latin1 = tmp_path / "c.yaml"
    latin1.write_bytes("lr: 0.001 # d\xe9j\xe0\n".encode("latin-1"))
    args = [a.format(latin1=latin1) for a in args]
    out = CliRunner().invoke(main, ["run", "--preset", "tiny", "--data", str(synth_dir), *args, "--tracking-uri",
                                    tracking_uri, "--no-progress"])
    assert_one_line_error(out, *fragments)
    assert not Path(tracking_uri.removeprefix("sqlite:///")).exists()  # nothing recorded, no FAILED run


@pytest.mark.parametrize("command, fragments", [
    (["report", "--out", "{file}"], ["is a file, not a folder"]),
    (["report", "--out", "{file}/sub"], ["lies under the file"]),
    (["report", "--out", "/proc/cgbench-report"], ["lies under /proc"]),
    (["data", "synth", "--out", "{file}/synth"], ["lies under the file"]),
    (["report", "--tracking-uri", "foo://x"], ["unknown scheme 'foo'"]),
    (["report", "--tracking-uri", "sqlite:////proc/mlflow.db"], ["lies under /proc"]),
    (["report", "--tracking-uri", "sqlite:///{file}"], ["is not an SQLite database"]),
    (["report", "--tracking-uri", "http://127.0.0.1:{port}/"], ["no tracking server answers", "Connection refused"]),
])
def test_bad_places_are_one_line(command, fragments, tmp_path):
    import socket

    file = tmp_path / "a-file"
    file.write_text("not a database\n")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [c.format(file=file, port=port) for c in command]
    started = time.monotonic()
    out = CliRunner().invoke(main, command)
    assert_one_line_error(out, *fragments)
    assert time.monotonic() - started < 60  # MLflow's own client retries for minutes
    assert file.read_text() == "not a database\n"
