"""Evaluation: the scoring paths on perfect inputs, ignore handling, nearest colours, and the full
``cgbench eval`` path on a tiny trained run recorded in a real sqlite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from mlflow import MlflowClient
from PIL import Image

from conftest import run_cli
from cgbench.cli import main
from cgbench.config import resolve
from cgbench.data.labels import IGNORE_INDEX, NUM_CLASSES, TRAIN_COLORS, colorize, colorize_ids, colors_to_train_ids
from cgbench.data.layouts import load_split
from cgbench.evaluate import evaluate
from cgbench.scoring.engine import output_file_name, stream, translator_inputs
from cgbench.fcn import train_fcn
from cgbench.models.segmenter import FCN8s
from cgbench.tracking import RunTracker
from cgbench.training import train
from cgbench.confusion import ConfusionMatrix
from cgbench.plugins import EvalContext, Segmenter
from cgbench.protocol import segmenter_input, upsample
from evaluators.fcn import FCNScore
from evaluators.seg import SegScore

SCORES = ("per_pixel_acc", "per_class_acc", "class_iou")
QUIET = dict(progress=False, echo=lambda *_: None)


# --- scoring paths on synthetic inputs --------------------------------------------------------


def _blocky_split(n: int = 5, size: int = 32, classes=(0, 2, 10, 13), ignore: bool = True, seed: int = 0):
    """Square label maps of 8x8 blocks (a few classes, some ignored pixels) and matching photos."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.tensor(classes, dtype=torch.uint8)
    coarse = pick[torch.randint(len(classes), (n, size // 8, size // 8), generator=g)]
    labels = coarse.repeat_interleave(8, 1).repeat_interleave(8, 2)
    if ignore:
        labels[:, :4, :] = IGNORE_INDEX  # a void strip on top, as the ego vehicle / unlabelled areas
    photos = colorize(labels).permute(0, 3, 1, 2).contiguous()
    return SimpleNamespace(labels=labels, photos=photos, label_colors=photos, names=[f"c/c_{i:06d}_000019_leftImg8bit" for i in range(n)],
                           paired=True, digest="synthetic")


class _ColourDecoder(torch.nn.Module):
    """A 'perfect FCN' for colour-coded photos: logits = -squared distance to each class colour."""

    def forward(self, x):
        rgb = (x + 1) * 127.5
        centres = torch.tensor(TRAIN_COLORS, dtype=torch.float32)
        return -((rgb[:, None] - centres[None, :, :, None, None]) ** 2).sum(2)


def _perfect(split):
    return lambda _inputs, index: colorize(split.labels[index]).permute(0, 3, 1, 2)


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_perfect_translations_score_one_and_ignored_pixels_are_dropped(batch_size):
    split = _blocky_split()
    segmenter = Segmenter(_ColourDecoder(), source="test")
    context = EvalContext(split, 32, torch.device("cpu"), batch_size, n_samples=2, loaders={"fcn": lambda: segmenter})
    evaluators = [FCNScore(context), SegScore(context)]
    stats = stream(evaluators, context, {"labels2photo": _perfect(split), "photo2labels": _perfect(split)},
                   progress=False)
    assert stats.images == 5
    labelled = int((split.labels != IGNORE_INDEX).sum())
    for ev in evaluators:
        result = ev.compute()
        assert result.metrics == {k: pytest.approx(1.0) for k in SCORES}
        assert result.scores.n_pixels == labelled  # every ignored pixel left out
        assert result.scores.evaluated_classes == (0, 2, 10, 13)
        assert int(result.confusion.sum()) == labelled
        assert set(result.samples) >= {"ground truth"} and all(len(v) == 2 for v in result.samples.values())


def test_wrong_translations_are_counted_against_the_ground_truth():
    split = _blocky_split(classes=(0, 2))
    road_everywhere = lambda _x, index: colorize(torch.zeros_like(split.labels[index])).permute(0, 3, 1, 2)  # noqa: E731
    context = EvalContext(split, 32, torch.device("cpu"), 4)
    ev = SegScore(context)
    stream([ev], context, {"photo2labels": road_everywhere}, progress=False)
    h = ev.compute().confusion
    labels = split.labels[split.labels != IGNORE_INDEX]
    assert h[0, 0] == (labels == 0).sum() and h[2, 0] == (labels == 2).sum()
    assert int(h.sum()) == len(labels) and int(h[:, 1:].sum()) == 0


def test_nearest_colour_mapping_of_noisy_generated_colours():
    split = _blocky_split(classes=tuple(range(NUM_CLASSES)), ignore=False, seed=3)
    g = torch.Generator().manual_seed(1)

    # The closest two train colours (bus, train) are 20 apart: noise within ±5 per channel
    # (L2 <= 8.7 < 10) must never change the nearest colour.
    def noisy(_x, index):
        rgb = colorize(split.labels[index]).permute(0, 3, 1, 2).int()
        return (rgb + torch.randint(-5, 6, rgb.shape, generator=g)).clamp(0, 255).to(torch.uint8)

    context = EvalContext(split, 32, torch.device("cpu"), 3)
    ev = SegScore(context)
    stream([ev], context, {"photo2labels": noisy}, progress=False)
    assert ev.compute().metrics["per_pixel_acc"] == 1.0


def test_outputs_are_upsampled_to_label_resolution_which_is_never_resized():
    split = _blocky_split(size=64)  # labels 64x64, generator resolution 32
    seen = []

    class Spy(_ColourDecoder):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return super().forward(x)

    context = EvalContext(split, 32, torch.device("cpu"), 5, loaders={"fcn": lambda: Segmenter(Spy(), "spy")})
    inputs_seen = []

    def g(inputs, index):
        inputs_seen.append(tuple(inputs.shape[-2:]))
        return colorize(split.labels[index][:, ::2, ::2].contiguous()).permute(0, 3, 1, 2)

    ev = FCNScore(context)
    stream([ev], context, {"labels2photo": g}, progress=False)
    assert inputs_seen == [(32, 32)] and seen == [(64, 64)]
    result = ev.compute()
    assert result.scores.n_pixels == int((split.labels != IGNORE_INDEX).sum())
    assert result.metrics["per_pixel_acc"] > 0.9  # 8x8 blocks: only block borders blur


def test_translator_inputs_match_training_inputs():
    ids = np.array([[7, 7, 9, 9], [7, 7, 9, 9], [0, 0, 11, 11], [0, 0, 11, 11]], dtype=np.uint8)  # 9: parking
    label_colors = torch.from_numpy(colorize_ids(ids[None])).permute(0, 3, 1, 2)
    x = translator_inputs("labels2photo", label_colors, 2)
    assert x.shape == (1, 3, 2, 2) and x.min() >= -1 and x.max() <= 1
    expected = torch.from_numpy(colorize_ids(ids[None, ::2, ::2])).permute(0, 3, 1, 2)
    assert torch.equal(((x + 1) * 127.5).round().to(torch.uint8), expected)
    assert segmenter_input(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8), (4, 8)).shape == (1, 3, 4, 8)
    assert output_file_name("a/a_1_leftImg8bit", "labels2photo") == "a/a_1_leftImg8bit.png"
    assert output_file_name("a/a_1_leftImg8bit", "photo2labels") == "a/a_1_gtFine_color.png"


# --- the full path on a tiny trained run ----------------------------------------------------------


@pytest.fixture(scope="module")
def trained(synth_dir, tmp_path_factory):
    """A tiny CycleGAN run and a tiny FCN on the same data, in one sqlite store."""
    folder = tmp_path_factory.mktemp("eval")
    uri = f"sqlite:///{folder}/mlflow.db"
    config = resolve("tiny", data=str(synth_dir))
    run = train(config, tracking_uri=uri, experiment="runs", **QUIET)
    fcn = train_fcn(config, tracking_uri=uri, experiment="fcns", **QUIET)
    return SimpleNamespace(uri=uri, run_id=run.run_id, fcn_id=fcn.run_id, config=config, folder=folder,
                           data=synth_dir)


def _artifacts(client, run_id, path):
    out = []
    for item in client.list_artifacts(run_id, path):
        out += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(out)


def test_cgbench_eval_scores_a_run_and_writes_into_it(trained):
    proc = run_cli("eval", "--run", trained.run_id, "--metric", "fcn", "--metric", "seg",
                   "--tracking-uri", trained.uri, "--no-progress", "--save-images")
    assert proc.returncode == 0, proc.stderr
    assert f"FCN trained on this data: run {trained.fcn_id}" in proc.stdout
    assert "images/s" in proc.stdout and "ground truth" in proc.stdout
    client = MlflowClient(trained.uri)
    run = client.get_run(trained.run_id)
    assert run.info.status == "FINISHED"  # evaluation does not touch the run's status
    for direction in ("labels2photo", "photo2labels", "ground_truth"):
        for key in SCORES:
            value = run.data.metrics[f"eval/{direction}/{key}"]
            assert 0.0 <= value <= 1.0
            assert [m.step for m in client.get_metric_history(trained.run_id, f"eval/{direction}/{key}")] == [4]
    fcn_run = client.get_run(trained.fcn_id)
    for key in SCORES:  # the ceiling copied from the FCN run, not recomputed differently
        assert run.data.metrics[f"eval/ground_truth/{key}"] == fcn_run.data.metrics[f"eval/ground_truth/{key}"]
    files = _artifacts(client, trained.run_id, "eval")
    for direction in ("labels2photo", "photo2labels"):
        for name in ("scores.json", "per_class.csv", "confusion.png", "samples.png"):
            assert f"eval/{direction}/{name}" in files
    images = [f for f in files if "/images/" in f]
    assert len(images) == 2 * 6
    assert "eval/labels2photo/images/synthmoor/synthmoor_000000_000019_leftImg8bit.png" in images
    assert "eval/photo2labels/images/synthmoor/synthmoor_000000_000019_gtFine_color.png" in images
    record = json.loads(Path(client.download_artifacts(trained.run_id, "eval/labels2photo/scores.json")).read_text())
    assert record["fcn"]["run_id"] == trained.fcn_id and record["n_images"] == 6 and record["step"] == 4
    assert record["evaluated_classes"] and set(record["evaluated_classes"]) <= {r["class"] for r in record["per_class"]}
    assert run.data.tags["cgbench.eval.fcn.fcn"] == f"run {trained.fcn_id}"
    # The saved PNGs are the images that were scored: re-scoring them gives the same numbers.
    val = load_split(trained.data, "val")
    cm = ConfusionMatrix(NUM_CLASSES)
    for i, name in enumerate(val.names):
        png = name.removesuffix("_leftImg8bit") + "_gtFine_color.png"
        path = client.download_artifacts(trained.run_id, f"eval/photo2labels/images/{png}")
        rgb = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1)[None]
        cm.update(val.labels[i : i + 1], colors_to_train_ids(upsample(rgb, val.labels.shape[-2:]), void=False))
    assert cm.compute().per_pixel_acc == pytest.approx(run.data.metrics["eval/photo2labels/per_pixel_acc"])


def test_re_evaluation_replaces_and_does_not_duplicate(trained, tmp_path):
    client = MlflowClient(trained.uri)
    evaluate(trained.run_id, ["fcn", "seg"], tracking_uri=trained.uri, **QUIET)
    first = {k: v for k, v in client.get_run(trained.run_id).data.metrics.items() if k.startswith("eval/")}
    files = _artifacts(client, trained.run_id, "eval/labels2photo")
    evaluate(trained.run_id, ["fcn", "seg"], tracking_uri=trained.uri, **QUIET)  # identical result
    assert {k: v for k, v in client.get_run(trained.run_id).data.metrics.items() if k.startswith("eval/")} == first
    for key in first:
        assert len(client.get_metric_history(trained.run_id, key)) == 1, key
    assert _artifacts(client, trained.run_id, "eval/labels2photo") == [f for f in files if "/images/" not in f]

    # A different FCN (a bare, untrained state dict) changes the FCN score: the new value is the one
    # shown, the old one stays in the key's (append-only) history, and nothing else is duplicated.
    torch.manual_seed(1)
    path = tmp_path / "other.pt"
    torch.save(FCN8s(NUM_CLASSES, width=4).state_dict(), path)
    report = evaluate(trained.run_id, ["fcn"], tracking_uri=trained.uri, fcn=str(path), fcn_arch="fcn8s", **QUIET)
    new = report.results["fcn"].metrics["per_pixel_acc"]
    assert new != first["eval/labels2photo/per_pixel_acc"]
    run = client.get_run(trained.run_id)
    assert run.data.metrics["eval/labels2photo/per_pixel_acc"] == new
    history = client.get_metric_history(trained.run_id, "eval/labels2photo/per_pixel_acc")
    assert sorted(m.value for m in history) == sorted([new, first["eval/labels2photo/per_pixel_acc"]])
    assert len(client.get_metric_history(trained.run_id, "eval/photo2labels/per_pixel_acc")) == 1
    assert run.data.tags["cgbench.eval.fcn.fcn"] == str(path)


# --- bad input: one line, exit status 2 ---------------------------------------------------------


def _cli(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_unknown_run_id_is_a_clear_error(trained):
    code, out = _cli("eval", "--run", "0" * 32, "--tracking-uri", trained.uri, "--no-progress")
    assert code == 2 and "no run '000" in out and "Traceback" not in out


def test_unknown_metric_lists_the_installed_ones(trained):
    code, out = _cli("eval", "--run", trained.run_id, "--metric", "lpips", "--tracking-uri", trained.uri)
    assert code == 2 and "unknown evaluator 'lpips'" in out and "fcn, fd-fcn, fid, kid, seg" in out


def test_run_without_checkpoint_is_a_clear_error(trained):
    tracker = RunTracker.create(trained.uri, "runs", "empty", {"cgbench.method": "cyclegan"})
    tracker.log_json(trained.config.to_dict(), "config.json")
    code, out = _cli("eval", "--run", tracker.run_id, "--tracking-uri", trained.uri, "--no-progress")
    assert code == 2
    assert f"run {tracker.run_id} has no checkpoint; train it with cgbench run or resume it" in out


def test_missing_fcn_says_how_to_train_one(synth_dir, tracking_uri):
    config = resolve("tiny", data=str(synth_dir), iters=1)
    run = train(config, tracking_uri=tracking_uri, experiment="runs", **QUIET)
    code, out = _cli("eval", "--run", run.run_id, "--metric", "fcn", "--tracking-uri", tracking_uri, "--no-progress")
    assert code == 2 and "no finished FCN trained on this dataset" in out
    assert f"cgbench fcn train --data {synth_dir}" in out and "--set image_size=32" in out
    code, out = _cli("eval", "--run", run.run_id, "--metric", "fcn", "--fcn", "missing.pt",
                     "--tracking-uri", tracking_uri)
    assert code == 2 and "does not exist" in out
    code, _ = _cli("eval", "--run", run.run_id, "--metric", "seg", "--tracking-uri", tracking_uri, "--no-progress")
    assert code == 0  # photo→labels needs no FCN


def test_evaluating_an_fcn_run_is_refused(trained):
    code, out = _cli("eval", "--run", trained.fcn_id, "--tracking-uri", trained.uri)
    assert code == 2 and "is not a run made by `cgbench run` (cgbench.method=fcn)" in out
