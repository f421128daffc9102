"""The Cityscapes label space: tables against cityscapesscripts, colours and nearest-colour decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as cs_labels

from cgbench.data import labels as L


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
