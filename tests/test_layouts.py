"""Loading Cityscapes, pix2pix (aligned) and CycleGAN (unaligned) layouts, and their bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as cs_labels
from cityscapesscripts.helpers.labels import name2label
from PIL import Image

from cgbench.data.labels import colorize_ids
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
    assert torch.equal(square.label_colors, full.label_colors[:, :, 1::2, 2::4])
    first = full.head(2)
    assert (len(first.names), len(first.photos), len(first.label_colors), len(first.labels)) == (2, 2, 2, 2)
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


def _authors_copies(official: Path, out: Path) -> dict[str, Path]:
    """A pix2pix aligned and a CycleGAN unaligned copy of an official layout, written as the
    authors' prepare_cityscapes_dataset.py does: frames numbered in sorted path order, photo and
    *_gtFine_color.png each resized to 256x256 (bicubic), JPEG quality 100 with 4:4:4 chroma."""
    aligned, unaligned = out / "aligned", out / "unaligned"
    jpeg = dict(format="JPEG", quality=100, subsampling=0)
    for split, saved in (("train", "train"), ("val", "test")):
        for folder in (aligned / saved, unaligned / f"{saved}A", unaligned / f"{saved}B"):
            folder.mkdir(parents=True)
        photos = sorted((official / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        colours = sorted((official / "gtFine" / split).glob("*/*_color.png"))
        for i, (photo_path, colour_path) in enumerate(zip(photos, colours, strict=True)):
            photo = Image.open(photo_path).convert("RGB").resize((256, 256), Image.BICUBIC)
            colour = Image.open(colour_path).convert("RGB").resize((256, 256), Image.BICUBIC)
            side_by_side = Image.new("RGB", (512, 256))
            side_by_side.paste(photo, (0, 0))
            side_by_side.paste(colour, (256, 0))
            side_by_side.save(aligned / saved / f"{i}.jpg", **jpeg)
            photo.save(unaligned / f"{saved}A" / f"{i}_A.jpg", **jpeg)
            colour.save(unaligned / f"{saved}B" / f"{i}_B.jpg", **jpeg)
    return {"aligned": aligned, "unaligned": unaligned}


def _write_official(root: Path, split: str, ids: list[np.ndarray], photos: list[np.ndarray]) -> None:
    for i, (frame_ids, photo) in enumerate(zip(ids, photos)):
        for kind, image in (("leftImg8bit", photo), ("gtFine", frame_ids), ("gtFine", colorize_ids(frame_ids))):
            folder = root / kind / split / "town"
            folder.mkdir(parents=True, exist_ok=True)
            suffix = {2: "gtFine_labelIds", 3: "gtFine_color"}[image.ndim] if kind == "gtFine" else kind
            Image.fromarray(image).save(folder / f"town_{i:06d}_000019_{suffix}.png")


@pytest.fixture(scope="module")
def every_label(tmp_path_factory) -> Path:
    """A hand-made official layout whose label maps hold every drawn label id in 32x32 blocks."""
    root = tmp_path_factory.mktemp("every_label") / "official"
    ids = np.array([label.id for label in cs_labels if label.id >= 0], dtype=np.uint8)
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 2)):
        maps = [rng.choice(ids, (4, 8)).repeat(32, 0).repeat(32, 1) for _ in range(n)]
        photos = [rng.integers(0, 256, (128, 256, 3), dtype=np.uint8) for _ in range(n)]
        _write_official(root, split, maps, photos)
    return root


@pytest.mark.parametrize("size", [256, 143])
def test_authors_layouts_give_the_official_ground_truth(every_label, datasets, tmp_path, size):
    for name, official_root in (("every_label", every_label), ("synthcity", datasets["cityscapes"])):
        copies = _authors_copies(official_root, tmp_path / name)
        for split in ("train", "val"):
            official = load_split(official_root, split, size=size, prep="authors")
            assert official.labels.shape[-2:] == official.photos.shape[-2:] == (size, size)
            for layout, root in copies.items():
                other = load_split(root, split, size=size, prep="authors")
                assert other.names[-1] == f"{len(other.names) - 1}" + ("_A" if layout == "unaligned" else "")
                for part in ("labels", "label_colors", "photos"):
                    assert torch.equal(getattr(other, part), getattr(official, part)), (name, layout, split, part)
    # ...and that ground truth is the label ids' own: 255 for every class that is not evaluated
    authors = load_split(every_label, "train", size=size, prep="authors")
    exact = load_split(every_label, "train", size=size, prep="clean")  # NEAREST from the label ids
    interior = _away_from_borders(exact.label_colors, 3)  # bicubic mixes colours at block borders
    assert interior.float().mean() > 0.5
    pole = torch.tensor(name2label["pole"].color, dtype=torch.uint8)
    pole_or_group = (exact.label_colors.permute(0, 2, 3, 1) == pole).all(-1)  # one colour for both
    expected = torch.where(pole_or_group, 5, exact.labels)
    assert torch.equal(authors.labels[interior], expected[interior])
    assert set(authors.labels[interior].unique().tolist()) == set(range(19)) | {255}


def _away_from_borders(colours: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, H, W) true where every pixel within ``radius`` has the same colour."""
    same = torch.ones(colours.shape[0], *colours.shape[2:], dtype=torch.bool)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            same &= (colours == colours.roll((dy, dx), dims=(2, 3))).all(1)
    return same


def test_authors_prep_of_the_official_layout_is_the_published_preparation(every_label, tmp_path):
    copies = _authors_copies(every_label, tmp_path)
    official = load_split(every_label, "val", prep="authors")  # no size: the prepared 256 px images
    aligned = load_split(copies["aligned"], "val", prep="authors")
    assert official.photos.shape[-2:] == (256, 256) and torch.equal(official.photos, aligned.photos)
    assert torch.equal(official.label_colors, aligned.label_colors)
    assert official.labels.shape[-2:] == (128, 256)  # validation ground truth: exact ids, never resized
    assert torch.equal(official.labels, load_split(every_label, "val").labels)
    with pytest.raises(DataError, match="unknown preparation"):
        load_split(every_label, "val", prep="paper")


def test_x_is_every_label_in_its_official_colour(every_label):
    clean = load_split(every_label, "train", prep="clean")
    ids = np.stack([np.asarray(Image.open(p)) for p in sorted(every_label.glob("gtFine/train/*/*_labelIds.png"))])
    assert torch.equal(clean.label_colors, torch.from_numpy(colorize_ids(ids)).permute(0, 3, 1, 2))
    parking = torch.tensor(name2label["parking"].color, dtype=torch.uint8)
    assert (clean.label_colors.permute(0, 2, 3, 1) == parking).all(-1).any()  # not repainted black
    small = load_split(every_label, "train", size=32, photo_size=16)
    assert small.label_colors.shape == (12, 3, 16, 16) and small.labels.shape == (12, 32, 32)


def test_lossy_jpeg_colour_labels_mostly_decode_to_the_same_ground_truth(datasets, tmp_path):
    root = tmp_path / "jpeg"
    (root / "train").mkdir(parents=True)
    for png in sorted((datasets["aligned"] / "train").glob("*.png")):
        Image.open(png).save(root / "train" / f"{png.stem}.jpg", quality=95)  # 4:2:0 chroma
    reference = load_split(datasets["aligned"], "train").labels
    assert (load_split(root, "train").labels == reference).float().mean() > 0.85


def test_unknown_split(datasets):
    with pytest.raises(DataError, match="unknown split"):
        load_split(datasets["cityscapes"], "test")
