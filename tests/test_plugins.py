"""Evaluator plugins: the built-ins through entry points, and a third-party distribution found and run."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import run_cli
from cgbench.config import resolve
from cgbench.training import train
from cgbench.plugins import Evaluator, PluginError, check_evaluator_class, discover
from evaluators.fcn import FCNScore
from evaluators.seg import SegScore

PLUGIN = '''
"""A third-party evaluator: the mean brightness of G's photos (needs no FCN)."""
import torch

from cgbench.plugins import Evaluator, Result


class Brightness(Evaluator):
    name = "brightness"
    direction = "labels2photo"
    needs = ()
    metrics = ("mean_brightness", "images")
    description = "mean pixel value of G(labels), in [0, 1]"

    def __init__(self, context):
        super().__init__(context)
        self.total, self.count = 0.0, 0

    def update(self, batch):
        self.total += batch.outputs.float().div(255).mean(dim=(1, 2, 3)).sum().item()
        self.count += len(batch.index)

    def compute(self):
        return Result({"mean_brightness": self.total / self.count, "images": float(self.count)})


class NoDirection(Evaluator):
    name = "nodirection"
    direction = "sideways"
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """A minimal installed distribution: ``*.dist-info`` with METADATA and entry_points.txt."""
    site = tmp_path_factory.mktemp("site")
    info = site / "cgb_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cgb-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [cgbench.evaluators]
        brightness = cgb_demo_plugin:Brightness
        nodirection = cgb_demo_plugin:NoDirection
        missing = cgb_demo_not_installed:Gone
    """))
    (site / "cgb_demo_plugin.py").write_text(PLUGIN)
    return site


def test_builtins_are_registered_entry_points():
    found = discover()
    assert found["fcn"] is FCNScore and found["seg"] is SegScore
    assert FCNScore.direction == "labels2photo" and FCNScore.needs == ("fcn",)
    assert SegScore.direction == "photo2labels" and SegScore.needs == ()
    for cls in (FCNScore, SegScore):
        assert cls.metrics == ("per_pixel_acc", "per_class_acc", "class_iou") and cls.description


def test_plugin_declarations_are_checked():
    class Bad(Evaluator):
        name = "bad"
        direction = "labels2photo"
        needs = ("inception",)

    with pytest.raises(PluginError, match="needs inception"):
        check_evaluator_class(Bad, "bad")
    with pytest.raises(PluginError, match="not a subclass of cgbench.plugins.Evaluator"):
        check_evaluator_class(object, "obj")


def test_discovery_finds_a_plugin_and_survives_broken_ones(plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    errors: dict[str, str] = {}
    found = discover(errors)
    assert {"fcn", "seg", "brightness"} <= set(found)
    assert "sideways" in errors["nodirection"] and "ModuleNotFoundError" in errors["missing"]


def test_cgbench_eval_lists_and_runs_a_third_party_plugin(plugin_site, synth_dir, tracking_uri):
    config = resolve("tiny", data=str(synth_dir), iters=2)
    run = train(config, tracking_uri=tracking_uri, experiment="t", progress=False, echo=lambda *_: None)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_site), os.environ.get("PYTHONPATH")]))}

    listed = run_cli("eval", "--list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert {"fcn", "seg", "brightness"} <= set(lines)
    assert "labels2photo" in lines["brightness"] and "mean_brightness,images" in lines["brightness"]
    assert "BROKEN" in lines["missing"]

    scored = run_cli("eval", "--run", run.run_id, "--metric", "brightness", "--tracking-uri", tracking_uri,
                     "--no-progress", env=env)
    assert scored.returncode == 0, scored.stderr
    assert "brightness" in scored.stdout
    client = MlflowClient(tracking_uri)
    metrics = client.get_run(run.run_id).data.metrics
    assert 0.0 < metrics["eval/brightness/mean_brightness"] < 1.0 and metrics["eval/brightness/images"] == 6
    files = {a.path for a in client.list_artifacts(run.run_id, "eval/brightness")}
    assert files == {"eval/brightness/scores.json"}

    from click.testing import CliRunner

    from cgbench.cli import main

    without = CliRunner().invoke(main, ["eval", "--run", run.run_id, "--metric", "brightness",
                                        "--tracking-uri", tracking_uri])  # this process: plugin not installed
    assert without.exit_code == 2 and "unknown evaluator 'brightness'" in without.output
    assert "installed evaluators: fcn, fd-fcn, fid, kid, seg" in without.output
