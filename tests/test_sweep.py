"""Sweeps through the real CLI on tiny SynthCity: plan, run, skip when done, resume when killed."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from conftest import wait_until
from cgbench.cli import main
from cgbench.sweep import load_spec

SPEC = """\
name: mini
tables: [4, 5]
preset: tiny
seeds: [0]
evaluators: [fcn, seg]
rows:
  - {row: cycle-only, ablation: cycle-only}
  - {row: cyclegan, ablation: cyclegan}
  - {row: pix2pix-future, method: not-a-method-yet}
"""


def _spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(text)
    return path


def _runs(client: MlflowClient, experiment: str = "mini"):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def test_sweep_runs_every_row_and_seed_then_skips_when_done(synth_dir, tracking_uri, tmp_path):
    spec = _spec(tmp_path)
    args = ["sweep", str(spec), "--seeds", "0,1", "--data", str(synth_dir), "--tracking-uri", tracking_uri,
            "--no-progress"]
    first = CliRunner().invoke(main, [*args, "--jobs", "2"])  # two worker processes
    assert first.exit_code == 0, first.output + first.stderr
    assert "2 not available" in first.output
    client = MlflowClient(tracking_uri)
    runs = _runs(client)
    parents = [r for r in runs if r.data.tags.get("cgbench.method") == "sweep"]
    fcns = [r for r in runs if r.data.tags.get("cgbench.method") == "fcn"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(fcns) == 1
    assert sorted((r.data.tags["cgbench.row"], r.data.tags["cgbench.seed"]) for r in children) == [
        ("cycle-only", "0"), ("cycle-only", "1"), ("cyclegan", "0"), ("cyclegan", "1")]
    for run in children:
        assert run.info.status == "FINISHED"
        for direction in ("labels2photo", "photo2labels"):
            for metric in ("per_pixel_acc", "per_class_acc", "class_iou"):
                assert 0.0 <= run.data.metrics[f"eval/{direction}/{metric}"] <= 1.0

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output + again.stderr
    assert "0 to do, 4 already finished" in again.output and "reusing run" in again.output
    assert len(_runs(client)) == len(runs)  # no training, no new FCN, no new parent


def test_killed_sweep_resumes_the_interrupted_run(synth_dir, tracking_uri, tmp_path):
    spec = _spec(tmp_path, SPEC.replace("seeds: [0]", "seeds: [0]\nset: {iters: 120, checkpoint_every: 10}")
                 .replace("  - {row: cycle-only, ablation: cycle-only}\n", ""))
    cmd = [str(Path(sys.executable).with_name("cgbench")), "sweep", str(spec), "--data", str(synth_dir),
           "--tracking-uri", tracking_uri, "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"})
    wait_until(lambda: any(tmp_path.glob("mlruns/mini/*/artifacts/checkpoints/step_00000020.pt")), proc,
               "the child's checkpoint of iteration 20 was written")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    client = MlflowClient(tracking_uri)
    (child,) = [r for r in _runs(client) if r.data.tags.get("cgbench.row") == "cyclegan"]
    assert child.info.status == "RUNNING"

    again = CliRunner().invoke(main, cmd[1:-1] + ["--no-progress"])
    assert again.exit_code == 0, again.output + again.stderr
    assert "1 to do" in again.output
    child = client.get_run(child.info.run_id)
    assert child.info.status == "FINISHED" and "eval/photo2labels/class_iou" in child.data.metrics
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "loss/G_gan")]
    assert steps == list(range(1, 121))


def test_dry_run_prints_the_plan_and_records_nothing(synth_dir, tracking_uri, tmp_path):
    out = CliRunner().invoke(main, ["sweep", str(_spec(tmp_path)), "--seeds", "0,1,2", "--data", str(synth_dir),
                                    "--tracking-uri", tracking_uri, "--dry-run"])
    assert out.exit_code == 0, out.output
    assert re.search(r"6 runs, about .* of training with --jobs 1", out.output)
    assert "pix2pix-future seed 2" in out.output and "not available" in out.output
    assert _runs(MlflowClient(tracking_uri)) == []


@pytest.mark.parametrize(
    "text, fragment",
    [
        (SPEC + "seed: [1]\n", "unknown key 'seed'"),
        (SPEC.replace("ablation: cycle-only", "ablaton: cycle-only"), "unknown key 'ablaton' in row 'cycle-only'"),
        (SPEC.replace("preset: tiny", "preset: huge"), "unknown preset 'huge'"),
        (SPEC.replace("evaluators: [fcn, seg]", "evaluators: [fcn, lpips]"), "unknown evaluator 'lpips'"),
        ("name: x\nrows: []\n", "has no rows"),
    ],
)
def test_bad_specs_are_one_line_errors(text, fragment, tmp_path, tracking_uri):
    out = CliRunner().invoke(main, ["sweep", str(_spec(tmp_path, text)), "--tracking-uri", tracking_uri, "--dry-run"])
    assert out.exit_code == 2 and fragment in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_shipped_specs_are_valid():
    root = Path(__file__).resolve().parent.parent / "runs"
    rows = {name: [r.key for r in load_spec(root / f"{name}.yaml").rows] for name in ("ablations", "baselines", "quickstart")}
    assert rows["ablations"] == rows["quickstart"] == ["cycle-only", "no-cycle", "forward-cycle", "backward-cycle",
                                                        "cyclegan"]
    assert rows["baselines"] == ["cogan", "bigan", "simgan", "feature-gan", "cyclegan", "pix2pix"]


def test_rows_of_one_ablation_with_different_settings_stay_apart(synth_dir, tracking_uri, tmp_path):
    """A spec's row is its own: two rows of one ablation that differ in a setting are two rows of
    the report, found again as such, never merged into the ablation's row."""
    spec = _spec(tmp_path, SPEC.replace(
        "  - {row: cycle-only, ablation: cycle-only}\n  - {row: cyclegan, ablation: cyclegan}\n"
        "  - {row: pix2pix-future, method: not-a-method-yet}\n",
        "  - {row: lr-low, ablation: cyclegan, lr: 1.0e-4}\n  - {row: lr-high, ablation: cyclegan, lr: 4.0e-4}\n"))
    args = ["sweep", str(spec), "--data", str(synth_dir), "--tracking-uri", tracking_uri, "--no-progress"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output + first.stderr
    client = MlflowClient(tracking_uri)
    children = {r.data.tags["cgbench.row"]: r for r in _runs(client) if r.data.tags.get("cgbench.sweep")}
    assert sorted(children) == ["lr-high", "lr-low"]
    assert {k: (r.data.params["lr"], r.info.run_name) for k, r in children.items()} == {
        "lr-low": ("0.0001", "lr-low-seed0"), "lr-high": ("0.0004", "lr-high-seed0")}

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "0 to do, 2 already finished" in again.output, again.output

    report = CliRunner().invoke(main, ["report", "--experiment", "mini", "--tracking-uri", tracking_uri,
                                       "--out", str(tmp_path / "reports"), "--table", "4,5"])
    assert report.exit_code == 0, report.output + report.stderr
    rows = re.findall(r"^\| (lr-\w+) \| 1 \|", report.output, flags=re.M)
    assert sorted(rows) == ["lr-high", "lr-high", "lr-low", "lr-low"], report.output  # in Tables 4 and 5
    table = pd.read_csv(tmp_path / "reports" / "mini.csv")
    shown = table[table["row"].str.startswith("lr-")]
    assert sorted(set(zip(shown["table"], shown["row"]))) == [(4, "lr-high"), (4, "lr-low"), (5, "lr-high"),
                                                              (5, "lr-low")]
    assert (shown["n"] == 1).all()
