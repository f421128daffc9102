"""The Cityscapes label space: tables against cityscapesscripts, colours and nearest-colour decoding."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as cs_labels
from cityscapesscripts.helpers.labels import name2label
from PIL import Image

from cgbench.data import labels as L

DRAWN = [label for label in cs_labels if label.id >= 0]  # json2labelImg never draws license plate (-1)


def test_tables_match_cityscapesscripts():
    assert L.NUM_CLASSES == 19 and L.IGNORE_INDEX == 255
    assert L.CLASS_NAMES[:3] == ["road", "sidewalk", "building"]
    assert L.CLASS_NAMES[-1] == "bicycle" and len(L.CLASS_NAMES) == 19
    for label in cs_labels:
        if label.id < 0:
            continue
        scored = 0 <= label.trainId < 19
        assert L.ID_TO_TRAIN_ID[label.id] == (label.trainId if scored else 255), label.name
        if scored:
            assert L.TRAIN_ID_TO_ID[label.trainId] == label.id
            assert L.CLASS_NAMES[label.trainId] == label.name
            assert tuple(L.TRAIN_COLORS[label.trainId]) == label.color
    assert (L.ID_TO_TRAIN_ID[34:] == 255).all()
    assert (L.ID_TO_TRAIN_ID[L.TRAIN_ID_TO_ID] == np.arange(19)).all()
    assert L.TRAIN_ID_TO_COLOR.shape == (256, 3) and (L.TRAIN_ID_TO_COLOR[19:] == 0).all()
    assert len({tuple(c) for c in L.TRAIN_COLORS}) == 19


def _random_ids(shape, seed=0) -> np.ndarray:
    ids = np.random.default_rng(seed).integers(0, 20, shape).astype(np.uint8)
    ids[ids == 19] = 255
    return ids


def test_colorize_numpy_and_torch():
    ids = _random_ids((2, 5, 7))
    rgb = L.colorize(ids)
    assert rgb.shape == (2, 5, 7, 3) and rgb.dtype == np.uint8
    assert (rgb[ids == 255] == 0).all()
    assert (rgb[ids == 0] == [128, 64, 128]).all()
    assert L.colorize(ids[0]).shape == (5, 7, 3)
    as_tensor = L.colorize(torch.from_numpy(ids))
    assert isinstance(as_tensor, torch.Tensor) and (as_tensor.numpy() == rgb).all()


def _to_nchw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2)


def test_round_trip_with_void():
    ids = _random_ids((3, 16, 24))
    decoded = L.colors_to_train_ids(_to_nchw(L.colorize(ids)), void=True)
    assert decoded.dtype == torch.int64 and decoded.shape == (3, 16, 24)
    assert (decoded.numpy() == ids).all()


def test_without_void_black_goes_to_a_class():
    ids = _random_ids((2, 8, 8))
    decoded = L.colors_to_train_ids(_to_nchw(L.colorize(ids)), void=False).numpy()
    assert (decoded[ids != 255] == ids[ids != 255]).all()
    assert decoded.max() < 19
    assert (decoded[ids == 255] == L.CLASS_NAMES.index("truck")).all()  # (0,0,70) is nearest black


def test_nearest_colour_under_noise_uint8_and_float():
    ids = _random_ids((4, 20, 20), seed=1)
    noise = np.random.default_rng(2).integers(-5, 6, ids.shape + (3,))
    noisy = np.clip(L.colorize(ids).astype(np.int64) + noise, 0, 255)
    # every perturbation is shorter than half the smallest distance between two colours (20)
    as_uint8 = L.colors_to_train_ids(_to_nchw(noisy.astype(np.uint8)), void=True)
    as_float = L.colors_to_train_ids(_to_nchw(noisy.astype(np.float32)), void=True)
    assert (as_uint8.numpy() == ids).all() and (as_float.numpy() == ids).all()


def test_chunking_gives_the_same_result(monkeypatch):
    rgb = _to_nchw(L.colorize(_random_ids((5, 12, 12), seed=3)))
    whole = L.colors_to_train_ids(rgb, void=True)
    monkeypatch.setattr(L, "_MAX_DISTANCE_ELEMENTS", 1)
    assert torch.equal(L.colors_to_train_ids(rgb, void=True), whole)


def test_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        L.colors_to_train_ids(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), void=True)


# --- ground truth from colour files: nearest of all label colours ------------------------------


def test_every_label_colour_decodes_to_its_label_and_train_id():
    assert all(tuple(L.ID_TO_COLOR[label.id]) == label.color for label in DRAWN)
    assert (L.ID_TO_COLOR[34:] == 0).all()
    for label in DRAWN:
        colour = np.array([[label.color]], dtype=np.uint8)
        shared = [other.id for other in DRAWN if other.color == label.color]
        assert L.decode_label_ids(colour)[0, 0] == min(shared), label.name  # lowest id of a shared colour
        expected = 5 if label.name == "polegroup" else (label.trainId if label.trainId < 19 else 255)
        assert L.decode_ground_truth(colour)[0, 0] == expected, label.name


def test_non_evaluated_classes_are_ignored_not_snapped_onto_train_classes():
    names = ["ground", "parking", "rail track", "guard rail", "bridge", "tunnel", "caravan", "trailer",
             "dynamic", "unlabeled", "ego vehicle", "rectification border", "out of roi", "static"]
    colours = np.array([[name2label[n].color for n in names]], dtype=np.uint8)
    assert (L.decode_ground_truth(colours) == 255).all()
    assert L.decode_label_ids(colours)[0].tolist() == [name2label[n].id for n in names[:9]] + [0] * 5
    # the old rule (train colours, black = void) snapped these onto classes that are scored
    old = L.colors_to_train_ids(torch.from_numpy(colours).permute(2, 0, 1)[None], void=True)[0, 0]
    assert (old[:9] != 255).all() and (old[9:] == 255).all()


def _brute_force_ids(rgb: np.ndarray) -> np.ndarray:
    """Nearest label colour by exhaustive search; ties to the lowest label id."""
    ordered = sorted(DRAWN, key=lambda label: label.id)
    colours = np.array([label.color for label in ordered], dtype=np.int64)
    d = ((rgb.reshape(-1, 1, 3).astype(np.int64) - colours[None]) ** 2).sum(-1)
    return np.array([label.id for label in ordered], dtype=np.uint8)[d.argmin(1)].reshape(rgb.shape[:-1])


def test_decoding_matches_exhaustive_search_on_any_colour():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 50, 40, 3), dtype=np.uint8)
    rgb[0, 0, :3] = [(0, 0, 100), (0, 0, 80), (240, 160, 150)]  # equidistant: 29|30, 27|29, 9|10
    first = L.decode_label_ids(rgb)
    assert first.shape == (3, 50, 40) and first.dtype == np.uint8
    assert (first == _brute_force_ids(rgb)).all()
    assert first[0, 0, :3].tolist() == [29, 27, 9]
    assert (L.decode_label_ids(rgb) == first).all()  # again, from the filled lookup table
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        L.decode_label_ids(rgb.astype(np.int16))


def _blocky_ids(seed: int, shape=(96, 160), block: int = 16) -> np.ndarray:
    ids = np.array([label.id for label in DRAWN], dtype=np.uint8)
    coarse = np.random.default_rng(seed).choice(ids, (shape[0] // block, shape[1] // block))
    return coarse.repeat(block, 0).repeat(block, 1)


def _jpeg(rgb: np.ndarray, **options) -> np.ndarray:
    buffer = BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", **options)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_colour_files_round_trip_through_jpeg_quality_100():
    ids = np.stack([_blocky_ids(seed) for seed in range(3)])
    truth = L.ID_TO_TRAIN_ID[ids]
    truth[ids == name2label["polegroup"].id] = 5  # indistinguishable from pole in colour
    painted = L.colorize_ids(ids)
    assert painted.shape == ids.shape + (3,) and (L.decode_ground_truth(painted) == truth).all()
    jpeg = np.stack([_jpeg(p, quality=100, subsampling=0) for p in painted])  # the authors' files
    assert not (jpeg == painted).all() and (L.decode_ground_truth(jpeg) == truth).all()
    lossy = np.stack([_jpeg(p, quality=90, subsampling=0) for p in painted])
    assert (L.decode_ground_truth(lossy) == truth).mean() > 0.99
