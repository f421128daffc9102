"""The Cityscapes label space used by the paper's evaluation.

Cityscapes annotates 34 label *ids* (plus the license-plate id -1); the benchmark, the FCN
score and the CycleGAN paper's Tables 2-5 use only the 19 *train classes* (road ... bicycle).
Every other id maps to train id 255 and is ignored when scoring. All tables here are derived
from ``cityscapesscripts.helpers.labels`` so they cannot drift from the official definition.
"""

from __future__ import annotations

import numpy as np
import torch
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

NUM_CLASSES = 19
"""Number of Cityscapes train classes scored by the paper (train ids 0..18)."""

IGNORE_INDEX = 255
"""Train id of every pixel that is not scored (void, ego vehicle, parking, caravan, ...)."""

_TRAIN_LABELS = sorted(
    (label for label in _CITYSCAPES_LABELS if 0 <= label.trainId < NUM_CLASSES),
    key=lambda label: label.trainId,
)
assert [label.trainId for label in _TRAIN_LABELS] == list(range(NUM_CLASSES))

CLASS_NAMES: list[str] = [label.name for label in _TRAIN_LABELS]
"""The 19 train-class names in train-id order: road, sidewalk, building, ..., bicycle."""

TRAIN_COLORS: np.ndarray = np.array([label.color for label in _TRAIN_LABELS], dtype=np.uint8)
"""(19, 3) uint8 official colour of each train class, as in the ``*_gtFine_color.png`` files."""

TRAIN_ID_TO_ID: np.ndarray = np.array([label.id for label in _TRAIN_LABELS], dtype=np.uint8)
"""(19,) uint8 Cityscapes label id of each train class (road -> 7, ..., bicycle -> 33)."""


def _id_to_train_id() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label in _CITYSCAPES_LABELS:
        if label.id >= 0 and 0 <= label.trainId < NUM_CLASSES:
            lut[label.id] = label.trainId
    return lut


ID_TO_TRAIN_ID: np.ndarray = _id_to_train_id()
"""(256,) uint8 lookup table from label id (the ``*_gtFine_labelIds.png`` values) to train id;
ids without a train class (and ids that do not exist) map to 255."""

TRAIN_ID_TO_COLOR: np.ndarray = np.zeros((256, 3), dtype=np.uint8)
"""(256, 3) uint8 lookup table from train id to colour; 255 and unused entries are black (void)."""
TRAIN_ID_TO_COLOR[:NUM_CLASSES] = TRAIN_COLORS

_VOID_COLOR = (0, 0, 0)


def colorize(train_ids: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Paint train ids with the official Cityscapes colours; ignored pixels become black.

    ``train_ids`` is a uint8 array or tensor of any shape, e.g. (H, W) or (N, H, W); the result has
    one more trailing axis of size 3 (RGB, uint8) and is of the same kind (numpy or torch, same
    device) as the input.
    """
    if isinstance(train_ids, torch.Tensor):
        lut = torch.from_numpy(TRAIN_ID_TO_COLOR).to(train_ids.device)
        return lut[train_ids.long()]
    return TRAIN_ID_TO_COLOR[np.asarray(train_ids, dtype=np.uint8)]


_MAX_DISTANCE_ELEMENTS = 1 << 25  # candidates x pixels per chunk: 128 MiB of float32 distances


def colors_to_train_ids(rgb: torch.Tensor, void: bool) -> torch.Tensor:
    """Map colour label images to train ids by the nearest official colour (L2 in RGB).

    This is the paper's photo->labels protocol: a generated colour label image is decoded pixel
    by pixel to the nearest of the 19 train-class colours (``void=False``). For ground-truth colour
    label files (``*_gtFine_color.png``, or the label halves of the pix2pix/CycleGAN sets) use
    ``void=True``: black (0, 0, 0) is then an extra candidate that decodes to 255, so unlabelled
    pixels stay ignored.

    ``rgb`` is (N, 3, H, W), uint8 or float with values in [0, 255]. Returns an int64 tensor
    (N, H, W) on the same device. Work is vectorised and chunked over images to bound memory.
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"expected colour images of shape (N, 3, H, W), got {tuple(rgb.shape)}")
    palette = TRAIN_COLORS.tolist() + ([list(_VOID_COLOR)] if void else [])
    candidate_ids = list(range(NUM_CLASSES)) + ([IGNORE_INDEX] if void else [])
    centres = torch.tensor(palette, dtype=torch.float32, device=rgb.device)  # (K, 3)
    ids = torch.tensor(candidate_ids, dtype=torch.int64, device=rgb.device)  # (K,)
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the ||x||^2 term is the same for every candidate.
    half_norms = 0.5 * (centres**2).sum(dim=1).view(1, -1, 1, 1)

    n, _, h, w = rgb.shape
    per_chunk = max(1, _MAX_DISTANCE_ELEMENTS // (len(palette) * h * w))
    out = torch.empty((n, h, w), dtype=torch.int64, device=rgb.device)
    for start in range(0, n, per_chunk):
        x = rgb[start : start + per_chunk].to(torch.float32)
        score = half_norms - torch.einsum("nchw,kc->nkhw", x, centres)
        out[start : start + per_chunk] = ids[score.argmin(dim=1)]
    return out
