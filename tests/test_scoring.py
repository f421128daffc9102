"""One scoring path for every source: trained runs, folders of images, the authors' checkpoints,
the null translators (the floor), and the Python API."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image
from torch import nn

from conftest import run_cli
from cgbench.config import resolve
from cgbench.data.labels import colorize
from cgbench.data.layouts import load_split
from cgbench.fcn import train_fcn
from cgbench.metrics import FCNScore, SegScore
from cgbench.models.networks import ResnetGenerator
from cgbench.models.unet import UnetGenerator
from cgbench.protocol import NULL_ROWS
from cgbench.scoring.external import load_authors_generator
from cgbench.scoring.sources import derangement, majority_labels, mean_photo
from cgbench.training import train

QUIET = dict(progress=False, echo=lambda *_: None)
SCORES = ("per_pixel_acc", "per_class_acc", "class_iou")


@pytest.fixture(scope="module")
def world(synth_dir, tmp_path_factory):
    """A tiny CycleGAN run, scored with --save-images, and a tiny FCN on the same data, in one store."""
    folder = tmp_path_factory.mktemp("scoring")
    uri = f"sqlite:///{folder}/mlflow.db"
    config = resolve("tiny", data=str(synth_dir))
    run = train(config, tracking_uri=uri, experiment="runs", **QUIET)
    fcn = train_fcn(config, tracking_uri=uri, experiment="fcns", **QUIET)
    proc = run_cli("eval", "--run", run.run_id, "--tracking-uri", uri, "--no-progress", "--save-images", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return SimpleNamespace(uri=uri, run_id=run.run_id, fcn_id=fcn.run_id, data=synth_dir, folder=folder,
                           metrics=MlflowClient(uri).get_run(run.run_id).data.metrics)


def _saved_images(world, direction: str, dest: Path) -> Path:
    src = Path(MlflowClient(world.uri).download_artifacts(world.run_id, f"eval/{direction}/images", str(dest)))
    return src


def _external_run(world, proc):
    assert proc.returncode == 0, proc.stderr
    run_id = re.search(r"Recorded in run (\w+)", proc.stdout).group(1)
    return MlflowClient(world.uri).get_run(run_id)


# --- the null translators ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 17])
def test_derangement_moves_every_index_and_is_seeded(n):
    order = derangement(n, seed=3)
    assert sorted(order) == list(range(n)) and all(order[i] != i for i in range(n))
    assert list(derangement(n, seed=3)) == list(order)
    if n >= 5:
        assert list(derangement(n, seed=4)) != list(order)


def test_majority_label_map_and_mean_photo_by_hand():
    labels = torch.tensor([[[1, 2], [255, 3]],
                           [[1, 4], [255, 3]],
                           [[5, 4], [255, 7]]], dtype=torch.uint8)
    # per pixel: 1 wins 2:1; 4 wins 2:1; ignored everywhere -> 0; 3 wins 2:1
    assert majority_labels(labels, 2).tolist() == [[1, 4], [0, 3]]
    tie = torch.tensor([[[6]], [[2]]], dtype=torch.uint8)
    assert majority_labels(tie, 1).tolist() == [[2]]  # a tie goes to the lower id
    photos = torch.stack([torch.full((3, 4, 4), 10, dtype=torch.uint8), torch.full((3, 4, 4), 21, dtype=torch.uint8)])
    assert mean_photo(photos, 4).unique().tolist() == [16]  # (10 + 21) / 2 = 15.5, rounded half to even


def test_null_rows_are_scored_once_through_the_evaluators_and_found_again(world):
    args = ("eval", "--nulls", "--data", str(world.data), "--image-size", "32", "--experiment", "nulls",
            "--tracking-uri", world.uri, "--no-progress")
    first = run_cli(*args, cwd=world.folder)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("scored and recorded") in (0, 5)  # 0: another test recorded them first
    again = run_cli(*args, cwd=world.folder)
    assert again.returncode == 0 and "scored and recorded" not in again.stdout, again.stdout
    client = MlflowClient(world.uri)
    runs = client.search_runs([client.get_experiment_by_name("nulls").experiment_id],
                              "tags.`cgbench.method` = 'null'")
    assert sorted(r.data.tags["cgbench.row"] for r in runs) == sorted(sum(NULL_ROWS.values(), ()))
    by_row = {r.data.tags["cgbench.row"]: r for r in runs}
    for direction, rows in NULL_ROWS.items():
        for row in rows:
            run = by_row[row]
            assert run.info.status == "FINISHED"
            assert all(0 <= run.data.metrics[f"eval/{direction}/{k}"] <= 1 for k in SCORES)
            other = "photo2labels" if direction == "labels2photo" else "labels2photo"
            assert not any(k.startswith(f"eval/{other}/") for k in run.data.metrics)
    assert by_row["null-mean-photo"].data.tags["cgbench.eval.fcn.fcn"] == f"run {world.fcn_id}"
    # The same numbers as the Python API computes on the same majority map: one scoring path.
    train_split, val = load_split(world.data, "train", photo_size=32), load_split(world.data, "val", photo_size=32)
    majority = colorize(majority_labels(train_split.labels, 32)).permute(2, 0, 1)
    api = SegScore()
    api.update(majority.expand(len(val.labels), -1, -1, -1), val.labels)
    got = api.compute()
    for key in SCORES:
        assert getattr(got, key) == pytest.approx(by_row["null-majority-labels"].data.metrics[f"eval/photo2labels/{key}"],
                                                  abs=1e-9)


# --- folders of images --------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["labels2photo", "photo2labels"])
def test_saved_images_reproduce_the_run_under_both_namings(world, tmp_path, direction):
    saved = _saved_images(world, direction, tmp_path / "saved")
    args = ("--direction", direction, "--data", str(world.data), "--tracking-uri", world.uri, "--experiment", "ext",
            "--no-progress")
    ours = _external_run(world, run_cli("eval", "--images", str(saved), "--name", "ours", *args, cwd=tmp_path))
    # The authors' test.py naming: frames by index in the sorted order of their paths, fakes beside reals.
    authors = tmp_path / "results" / "test_latest" / "images"
    authors.mkdir(parents=True)
    fake = "fake_A" if direction == "labels2photo" else "fake_B"
    for i, path in enumerate(sorted(p for p in saved.rglob("*.png"))):
        shutil.copy(path, authors / f"{i}_{fake}.png")
        shutil.copy(path, authors / f"{i}_real_B.png")  # ignored, as their other outputs
    theirs = _external_run(world, run_cli("eval", "--images", str(tmp_path / "results"), "--name", "theirs", *args,
                                          cwd=tmp_path))
    for run in (ours, theirs):
        assert run.data.tags["cgbench.method"] == "external" and run.data.tags["cgbench.source"] == "images"
        assert run.data.tags["cgbench.image_size"] == "32"
        for key in SCORES:
            assert run.data.metrics[f"eval/{direction}/{key}"] == pytest.approx(
                world.metrics[f"eval/{direction}/{key}"], abs=1e-6)
    assert ours.data.tags["cgbench.row"] == "ours"
    assert ours.data.tags["cgbench.folder_digest"] != theirs.data.tags["cgbench.folder_digest"]


def test_missing_and_unmatched_images_are_one_line_errors(world, tmp_path):
    saved = _saved_images(world, "labels2photo", tmp_path / "saved")
    files = sorted(saved.rglob("*.png"))
    files[0].unlink()
    files[1].unlink()
    args = ("--direction", "labels2photo", "--data", str(world.data), "--tracking-uri", world.uri, "--no-progress")
    proc = run_cli("eval", "--images", str(saved), *args, cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "2 of 6 validation frames have no image" in proc.stderr and "--allow-partial" in proc.stderr
    run = _external_run(world, run_cli("eval", "--images", str(saved), "--allow-partial", *args, cwd=tmp_path))
    assert float(run.data.tags["cgbench.coverage"]) == pytest.approx(4 / 6)
    Image.new("RGB", (32, 32)).save(saved / "holiday.png")
    proc = run_cli("eval", "--images", str(saved), "--allow-partial", *args, cwd=tmp_path)
    assert proc.returncode == 2 and "holiday.png" in proc.stderr and "match no validation frame" in proc.stderr


# --- the authors' checkpoints ------------------------------------------------------------------------------


class AuthorsResnetBlock(nn.Module):
    """A residual block laid out as the authors' code lays it out (docs/protocol.md#the-authors-data-and-file-names)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim),
                                        nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3),
                                        nn.InstanceNorm2d(dim))

    def forward(self, x):
        return x + self.conv_block(x)


class AuthorsResnetGenerator(nn.Module):
    """The authors' ResNet generator's layout: one Sequential ``model``, 7x7 conv, two stride-2
    convs, residual blocks, two transposed convs, 7x7 conv, tanh; instance norm without affine."""

    def __init__(self, ngf: int, blocks: int):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1), nn.InstanceNorm2d(ngf * mult * 2),
                       nn.ReLU(True)]
        layers += [AuthorsResnetBlock(ngf * 4) for _ in range(blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1),
                       nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def _random_state(net: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in net.state_dict().items()}


def test_an_authors_resnet_checkpoint_loads_and_translates_as_their_network(tmp_path):
    theirs = AuthorsResnetGenerator(ngf=8, blocks=6)
    theirs.load_state_dict(_random_state(theirs, 0))
    state = {f"module.{k}": v for k, v in theirs.state_dict().items()}  # saved from a DataParallel wrapper
    state["module.model.2.running_mean"] = torch.zeros(8)  # instance-norm statistics of old checkpoints
    path = tmp_path / "latest_net_G_B.pth"
    torch.save(state, path)
    ours = load_authors_generator(path, "resnet_6blocks", "instance", 32, torch.device("cpu"))
    assert isinstance(ours, ResnetGenerator)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs.eval()(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="does not fit --arch resnet_9blocks --norm instance: it has no "):
        load_authors_generator(path, "resnet_9blocks", "instance", 32, torch.device("cpu"))


def test_an_authors_unet_checkpoint_loads_with_their_key_names(tmp_path):
    ours_layout = UnetGenerator(3, 3, 128, 4, dropout=False)
    # Their U-Net nests UnetSkipConnectionBlocks under .model exactly as cgbench's UnetBlock does.
    state = _random_state(ours_layout, 1)
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(state, path)
    net = load_authors_generator(path, "unet_128", "instance", 128, torch.device("cpu"))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(Exception, match="give --image-size 256"):
        load_authors_generator(path, "unet_256", "instance", 128, torch.device("cpu"))


def test_cgbench_eval_scores_an_authors_checkpoint(world, tmp_path):
    theirs = AuthorsResnetGenerator(ngf=4, blocks=6)
    path = tmp_path / "latest_net_G_B.pth"
    torch.save(theirs.state_dict(), path)
    run = _external_run(world, run_cli(
        "eval", "--checkpoint", str(path), "--arch", "resnet_6blocks", "--direction", "labels2photo",
        "--image-size", "32", "--data", str(world.data), "--tracking-uri", world.uri, "--no-progress", cwd=tmp_path))
    assert run.data.tags["cgbench.source"] == "checkpoint" and run.data.tags["cgbench.row"] == "latest_net_G_B"
    assert all(0 <= run.data.metrics[f"eval/labels2photo/{k}"] <= 1 for k in SCORES)
    bad = run_cli("eval", "--checkpoint", str(path), "--arch", "resnet_9blocks", "--direction", "labels2photo",
                  "--image-size", "32", "--data", str(world.data), "--tracking-uri", world.uri, cwd=tmp_path)
    assert bad.returncode == 2 and "model.16.body.1.weight" in bad.stderr, bad.stderr


# --- the Python API ---------------------------------------------------------------------------------------------


def readme_api_example() -> str:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    return re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S).group(1)


def test_the_readme_api_example_runs():
    lines = readme_api_example().strip().splitlines()
    assert len(lines) <= 12
    namespace: dict = {}
    exec(compile("\n".join(lines), "README.md", "exec"), namespace)
    assert 0 <= namespace["scores"].class_iou <= 1


def test_the_api_gives_the_evaluators_numbers(world, tmp_path):
    """FCNScore and SegScore over the images a run's evaluation saved equal the run's recorded scores."""
    val = load_split(world.data, "val")
    fcn = FCNScore(fcn=world.fcn_id, tracking_uri=world.uri)
    seg = SegScore()
    saved = {d: _saved_images(world, d, tmp_path / d) for d in ("labels2photo", "photo2labels")}
    for i, name in enumerate(val.names):
        stem = name.removesuffix("_leftImg8bit")
        photo = np.array(Image.open(saved["labels2photo"] / f"{name}.png"))
        labels = np.array(Image.open(saved["photo2labels"] / f"{stem}_gtFine_color.png"))
        fcn.update(photo[None], val.labels[i:i + 1])  # channels last is fine
        seg.update(torch.from_numpy(labels).permute(2, 0, 1), val.labels[i])
    for metric, direction in ((fcn, "labels2photo"), (seg, "photo2labels")):
        got = metric.compute()
        for key in SCORES:
            assert getattr(got, key) == pytest.approx(world.metrics[f"eval/{direction}/{key}"], abs=1e-6)
    with pytest.raises(Exception, match="must be uint8"):
        seg.update(torch.zeros(1, 3, 4, 4), val.labels[:1])
