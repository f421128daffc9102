"""Training runs on tiny SynthCity, recorded in a real sqlite MLflow store."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from cgbench.config import resolve
from cgbench.methods.cyclegan import ABLATIONS, CycleGAN
from cgbench.protocol import TAG_PREFIX, Tags
from cgbench.training import lr_factor, train

LOSS_KEYS = [f"loss/{t}" for t in CycleGAN.terms]


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_every_ablation_records_every_loss_term(ablation, synth_dir, tracking_uri):
    config = resolve("tiny", data=str(synth_dir), ablation=ablation, iters=3)
    result = train(config, tracking_uri=tracking_uri, experiment="t", preset="tiny", progress=False,
                   echo=lambda *_: None)
    client = MlflowClient(tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    for key in LOSS_KEYS + ["lr", "perf/sec_per_iter"]:
        assert [s for s, _ in _history(client, result.run_id, key)] == [1, 2, 3], key
    on = {k for k in LOSS_KEYS if any(v != 0 for _, v in _history(client, result.run_id, k))}
    a = ABLATIONS[ablation]
    assert ("loss/G_gan" in on) == a.gan and ("loss/D_X" in on) == a.gan
    assert ("loss/cycle_forward" in on) == a.cycle_forward
    assert ("loss/cycle_backward" in on) == a.cycle_backward
    assert ("loss/idt_G" in on) == a.identity


def test_run_records_config_tags_dataset_and_artifacts(synth_dir, tracking_uri):
    config = resolve("tiny", data=str(synth_dir), iters=4, sets={"checkpoint_every": 2, "sample_every": 2})
    result = train(config, tracking_uri=tracking_uri, experiment="t", preset="tiny", progress=False,
                   echo=lambda *_: None)
    client = MlflowClient(tracking_uri)
    run = client.get_run(result.run_id)
    params, tags = run.data.params, run.data.tags
    for key, value in config.to_dict().items():
        assert params[key] == str(value)
    assert tags["cgbench.method"] == "cyclegan" and tags["cgbench.ablation"] == "cyclegan" == tags["cgbench.row"]
    assert tags["cgbench.dataset"] == "synthcity" and len(tags["cgbench.dataset_digest"]) >= 16
    assert tags["cgbench.code_version"] and tags["cgbench.pkg.torch"] and tags["cgbench.pkg.mlflow"] == "3.17.2"
    vocabulary = {name for key, name in vars(Tags).items() if key.isupper()}
    families = (Tags.package(""), Tags.named("speed."))
    assert {k for k in tags if k.startswith(TAG_PREFIX) and not k.startswith(families)} <= vocabulary
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest == tags["cgbench.dataset_digest"]
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.json", "environment.json", "checkpoints", "samples"} <= artifacts
    assert json.loads(open(client.download_artifacts(result.run_id, "config.json")).read()) == config.to_dict()
    samples = {a.path for a in client.list_artifacts(result.run_id, "samples")}
    assert samples == {"samples/iter_00000002.png", "samples/iter_00000004.png"}
    checkpoints = [a.path for a in client.list_artifacts(result.run_id, "checkpoints")]
    assert checkpoints == ["checkpoints/step_00000002.pt", "checkpoints/step_00000004.pt"]


def test_seed_fixes_the_whole_run(synth_dir, tracking_uri):
    def losses(seed: int) -> list[float]:
        config = resolve("tiny", data=str(synth_dir), iters=3, seed=seed)
        r = train(config, tracking_uri=tracking_uri, experiment="t", progress=False, echo=lambda *_: None)
        client = MlflowClient(tracking_uri)
        return [v for k in LOSS_KEYS for _, v in _history(client, r.run_id, k)]

    first = losses(0)
    assert losses(0) == first
    assert losses(1) != first


def test_linear_decay_schedule():
    assert lr_factor(0, 100, 0.5) == 1.0 and lr_factor(49, 100, 0.5) == 1.0
    assert lr_factor(75, 100, 0.5) == pytest.approx(0.5) and lr_factor(100, 100, 0.5) == 0.0
    assert lr_factor(10, 100, 0.0) == 1.0
