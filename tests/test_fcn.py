"""The evaluator FCN: training run records, checkpoint format, loading by run id / path, lookup."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from mlflow import MlflowClient

from cgbench.cli import main
from cgbench.config import PRESETS, resolve
from cgbench.data.layouts import load_split
from cgbench.errors import CgbenchError, ConfigError
from cgbench.fcn import find_fcn_run, load_fcn, train_fcn, validate_fcn_config
from cgbench.models.segmenter import FCN8s
from cgbench.tracking import load_run_checkpoint

SCORES = ("per_pixel_acc", "per_class_acc", "class_iou")
QUIET = dict(progress=False, echo=lambda *_: None)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def fcn_run(synth_dir, tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('fcn')}/mlflow.db"
    config = resolve("tiny", data=str(synth_dir), sets={"fcn_epochs": 2})
    result = train_fcn(config, tracking_uri=uri, experiment="fcns", **QUIET)
    return uri, config, result


def test_fcn_run_is_tracked_like_a_run(fcn_run, synth_dir):
    uri, config, result = fcn_run
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert tags["cgbench.method"] == "fcn" and tags["cgbench.dataset"] == "synthcity"
    assert tags["cgbench.dataset_digest"] == load_split(synth_dir, "train").digest  # what `cgbench run` records
    assert tags["cgbench.image_size"] == "32" and tags["cgbench.fcn_arch"] == "fcn8s"
    assert run.data.params["fcn_width"] == "4" and run.data.params["total_iterations"] == str(result.iterations)
    assert result.iterations == 2 * 3  # 12 photos, batch 4, 2 epochs
    losses = client.get_metric_history(result.run_id, "loss/fcn")
    assert [m.step for m in sorted(losses, key=lambda m: m.step)] == list(range(1, result.iterations + 1))
    for key in SCORES:
        value = run.data.metrics[f"eval/ground_truth/{key}"]
        assert 0.0 <= value <= 1.0 and value == pytest.approx(result.ground_truth.metrics[key])
    files = {a.path for a in client.list_artifacts(result.run_id, "eval/ground_truth")}
    assert {f"eval/ground_truth/{n}" for n in ("scores.json", "per_class.csv", "confusion.png", "samples.png")} <= files
    csv = open(client.download_artifacts(result.run_id, "eval/ground_truth/per_class.csv")).read().splitlines()
    assert csv[0] == "train_id,class,gt_pixels,evaluated,acc,iou" and len(csv) == 20 and csv[1].startswith("0,road,")


def test_checkpoint_loads_weights_only_by_run_id_and_path(fcn_run, tmp_path):
    uri, config, result = fcn_run
    client = MlflowClient(uri)
    state = load_run_checkpoint(client, result.run_id)  # torch.load(weights_only=True) inside
    assert state["arch"] == "fcn8s" and state["width"] == 4 and state["num_classes"] == 19
    assert state["image_size"] == 32 and set(state["ground_truth"]) == set(SCORES)

    by_id = load_fcn(result.run_id, client, CPU, **{"echo": lambda *_: None})
    path = tmp_path / "fcn.pt"
    torch.save(state, path)
    by_path = load_fcn(str(path), client, CPU, echo=lambda *_: None)
    bare = tmp_path / "bare.pt"
    torch.save(state["segmenter"], bare)
    by_bare = load_fcn(str(bare), client, CPU, arch="fcn8s", echo=lambda *_: None)
    x = torch.rand(2, 3, 32, 64) * 2 - 1
    with torch.no_grad():
        outs = [s.model(x) for s in (by_id, by_path, by_bare)]
    assert outs[0].shape == (2, 19, 32, 64)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    assert by_id.run_id == result.run_id and by_id.ground_truth == pytest.approx(result.ground_truth.metrics)
    assert not by_id.model.training


def test_lookup_takes_the_latest_finished_fcn_with_same_digest_and_size(fcn_run, synth_dir):
    uri, config, result = fcn_run
    client = MlflowClient(uri)
    digest = client.get_run(result.run_id).data.tags["cgbench.dataset_digest"]
    assert find_fcn_run(client, digest, 32).info.run_id == result.run_id
    assert find_fcn_run(client, digest, 64) is None
    assert find_fcn_run(client, "0" * 16, 32) is None
    newer = train_fcn(config.replace(fcn_epochs=1, seed=1), tracking_uri=uri, experiment="other", **QUIET)
    assert find_fcn_run(client, digest, 32).info.run_id == newer.run_id  # across experiments
    with pytest.raises(CgbenchError, match="cgbench fcn train --data /some/where --set image_size=64"):
        load_fcn(None, client, CPU, digest=digest, image_size=64, data_root="/some/where")


def test_bad_fcn_inputs_are_clear_errors(fcn_run, tmp_path):
    uri, config, result = fcn_run
    client = MlflowClient(uri)
    twenty = tmp_path / "twenty.pt"
    torch.save(FCN8s(num_classes=20, width=4).state_dict(), twenty)
    with pytest.raises(CgbenchError, match="20 output classes.*19"):
        load_fcn(str(twenty), client, CPU)
    with pytest.raises(CgbenchError, match="not an fcn_resnet50 state dict"):
        load_fcn(str(twenty), client, CPU, arch="fcn_resnet50")
    pickled = tmp_path / "module.pt"
    torch.save(FCN8s(num_classes=19, width=4), pickled)  # a whole pickled module: refused, never unpickled
    with pytest.raises(CgbenchError, match="weights_only=True"):
        load_fcn(str(pickled), client, CPU)
    with pytest.raises(CgbenchError, match="no run '"):
        load_fcn("f" * 32, client, CPU)
    with pytest.raises(ConfigError, match="fcn_arch"):
        validate_fcn_config(resolve("tiny", sets={"fcn_arch": "unet"}))


def test_presets_carry_fcn_settings():
    for name, preset in PRESETS.items():
        config = resolve(name)
        validate_fcn_config(config)
        assert config.fcn_arch == "fcn8s"
    assert resolve("cpu").fcn_epochs > resolve("tiny").fcn_epochs


def test_cli_fcn_train(synth_dir, tracking_uri):
    result = CliRunner().invoke(main, ["fcn", "train", "--data", str(synth_dir), "--preset", "tiny", "--seed", "3",
                                       "--set", "fcn_crop=32", "--tracking-uri", tracking_uri, "--experiment", "e", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Ground truth (real val photos): per-pixel" in result.output
    (run,) = MlflowClient(tracking_uri).search_runs([MlflowClient(tracking_uri).get_experiment_by_name("e").experiment_id])
    assert run.data.tags["cgbench.method"] == "fcn" and run.data.tags["cgbench.seed"] == "3"
    assert run.data.params["fcn_crop"] == "32"  # trained on 32x32 windows of the 64x32 label maps
    bad = CliRunner().invoke(main, ["fcn", "train", "--data", str(synth_dir), "--preset", "tiny",
                                    "--set", "fcn_lr=0", "--tracking-uri", tracking_uri])
    assert bad.exit_code == 2 and "fcn_lr" in bad.output
