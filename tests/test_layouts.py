"""Loading Cityscapes, pix2pix (aligned) and CycleGAN (unaligned) layouts, and their bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cgbench.data.layouts import detect_layout, load_split
from cgbench.data.synthcity import generate
from cgbench.errors import DataError


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """One tiny SynthCity set written in all three layouts, in the same (sorted) order."""
    base = tmp_path_factory.mktemp("layouts")
    cityscapes = generate(base / "cityscapes", size=32, n_train=4, n_val=2, seed=1, workers=1)
    aligned, unaligned = base / "aligned", base / "unaligned"
    for split, suffix in (("train", "train"), ("val", "test")):
        for folder in (aligned / split, unaligned / f"{suffix}A", unaligned / f"{suffix}B"):
            folder.mkdir(parents=True)
        for i, photo in enumerate(sorted((cityscapes / "leftImg8bit" / split).rglob("*.png"))):
            city = photo.parent.name
            colour = (cityscapes / "gtFine" / split / city /
                      photo.name.replace("leftImg8bit", "gtFine_color"))
            a, b = np.asarray(Image.open(photo)), np.asarray(Image.open(colour))
            Image.fromarray(np.concatenate([a, b], axis=1)).save(aligned / split / f"{i}.png")
            shutil.copy(photo, unaligned / f"{suffix}A" / f"{i}_A.png")
            shutil.copy(colour, unaligned / f"{suffix}B" / f"{i}_B.png")
    return {"cityscapes": cityscapes, "aligned": aligned, "unaligned": unaligned}


@pytest.mark.parametrize("layout", ["cityscapes", "aligned", "unaligned"])
def test_detects_each_layout(datasets, layout):
    assert detect_layout(datasets[layout]) == layout


@pytest.mark.parametrize("split, n", [("train", 4), ("val", 2)])
def test_three_layouts_load_the_same_data(datasets, split, n):
    reference = load_split(datasets["cityscapes"], split)
    assert reference.photos.shape == (n, 3, 32, 64) and reference.photos.dtype == torch.uint8
    assert reference.labels.shape == (n, 32, 64) and reference.labels.dtype == torch.uint8
    assert reference.paired and reference.layout == "cityscapes"
    assert set(reference.labels.unique().tolist()) <= set(range(19)) | {255}
    assert reference.names[0].startswith("synth") and reference.names[0].endswith("_leftImg8bit")
    for layout in ("aligned", "unaligned"):
        other = load_split(datasets[layout], split)
        assert other.layout == layout and other.paired
        assert torch.equal(other.photos, reference.photos), layout
        assert torch.equal(other.labels, reference.labels), layout
    assert load_split(datasets["unaligned"], split).names[0] == "0_A"


def test_resizing(datasets):
    square = load_split(datasets["cityscapes"], "train", size=16)
    assert square.photos.shape == (4, 3, 16, 16) and square.labels.shape == (4, 16, 16)
    full = load_split(datasets["cityscapes"], "train")
    assert torch.equal(square.labels, full.labels[:, 1::2, 2::4])  # NEAREST keeps label values
    mixed = load_split(datasets["aligned"], "val", size=(32, 64), photo_size=(8, 16))
    assert mixed.photos.shape == (2, 3, 8, 16) and mixed.labels.shape == (2, 32, 64)
    with pytest.raises(DataError, match="not a size"):
        load_split(datasets["cityscapes"], "train", size=(0, 4))


def test_digest_follows_the_bytes_not_the_folder(datasets, tmp_path):
    digest = load_split(datasets["aligned"], "train").digest
    copy = shutil.copytree(datasets["aligned"], tmp_path / "elsewhere")
    assert load_split(copy, "train").digest == digest
    assert load_split(copy, "val").digest != digest
    first = copy / "train" / "0.png"
    img = np.asarray(Image.open(first)).copy()
    img[0, 0, 0] ^= 1
    Image.fromarray(img).save(first)
    assert load_split(copy, "train").digest != digest


def test_aligned_val_falls_back_to_test(datasets, tmp_path):
    copy = shutil.copytree(datasets["aligned"], tmp_path / "aligned")
    (copy / "val").rename(copy / "test")
    assert load_split(copy, "val").photos.shape[0] == 2


def test_unaligned_with_different_counts_is_unpaired(datasets, tmp_path):
    copy = shutil.copytree(datasets["unaligned"], tmp_path / "unaligned")
    (copy / "trainB" / "0_B.png").unlink()
    split = load_split(copy, "train")
    assert not split.paired and split.photos.shape[0] == 4 and split.labels.shape[0] == 3


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "nowhere", "train")


def test_no_matching_layout_names_the_three(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError) as err:
        detect_layout(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message
    assert all(word in message for word in ("leftImg8bit", "trainA", "aligned"))


def test_corrupt_image_is_named(datasets, tmp_path):
    copy = shutil.copytree(datasets["cityscapes"], tmp_path / "cs")
    photo = sorted((copy / "leftImg8bit" / "train").rglob("*.png"))[1]
    photo.write_bytes(photo.read_bytes()[:60])
    with pytest.raises(DataError, match="re-generate or replace") as err:
        load_split(copy, "train")
    assert photo.name in str(err.value)


def test_missing_label_is_named(datasets, tmp_path):
    copy = shutil.copytree(datasets["cityscapes"], tmp_path / "cs")
    label = sorted((copy / "gtFine" / "val").rglob("*_labelIds.png"))[0]
    label.unlink()
    with pytest.raises(DataError, match="has no label file") as err:
        load_split(copy, "val")
    assert label.name in str(err.value)


def test_a_file_of_another_size_is_named(datasets, tmp_path):
    copy = shutil.copytree(datasets["aligned"], tmp_path / "aligned")
    Image.new("RGB", (40, 20)).save(copy / "train" / "9.png")
    with pytest.raises(DataError, match="share one size") as err:
        load_split(copy, "train")
    assert str(copy / "train" / "9.png") in str(err.value)
    assert load_split(copy, "train", size=16).photos.shape == (5, 3, 16, 16)


def test_jpeg_colour_labels_decode_to_nearest_colour(datasets, tmp_path):
    root = tmp_path / "jpeg"
    (root / "train").mkdir(parents=True)
    for png in sorted((datasets["aligned"] / "train").glob("*.png")):
        Image.open(png).save(root / "train" / f"{png.stem}.jpg", quality=95)
    reference = load_split(datasets["aligned"], "train").labels
    assert (load_split(root, "train").labels == reference).float().mean() > 0.9


def test_unknown_split(datasets):
    with pytest.raises(DataError, match="unknown split"):
        load_split(datasets["cityscapes"], "test")
