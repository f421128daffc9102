"""The Cityscapes label space used by the paper's evaluation.

Cityscapes annotates 34 label *ids* (plus the license-plate id -1); the benchmark, the FCN
score and the CycleGAN paper's Tables 2-5 use only the 19 *train classes* (road ... bicycle).
Every other id maps to train id 255 and is ignored when scoring. All tables here are derived
from ``cityscapesscripts.helpers.labels`` so they cannot drift from the official definition.

Three colour rules live here, each for one job:

- :func:`colorize_ids` paints label ids with *every* label's colour, as the official
  ``*_gtFine_color.png`` files do (parking, ground, guard rail, ... keep their colours; only
  unlabeled, ego vehicle, rectification border, out of roi and static are black). This is the
  generator's input X, the paper's label map.
- :func:`decode_ground_truth` reads such a colour image back as ground truth: each pixel takes the
  nearest (L2 in RGB) of all label colours, then that label's train id, so every non-evaluated
  class is 255.
- :func:`colors_to_train_ids` is the photo->labels *scoring* rule of the protocol: each generated
  pixel takes the nearest of the 19 train-class colours, so every pixel gets a class.

:func:`colorize` paints train ids (19 colours, black for 255) for display.
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

ID_TO_COLOR: np.ndarray = np.zeros((256, 3), dtype=np.uint8)
"""(256, 3) uint8 lookup table from label id to its official colour, as painted in the
``*_gtFine_color.png`` files; ids that do not exist are black."""
for _label in _CITYSCAPES_LABELS:
    if _label.id >= 0:
        ID_TO_COLOR[_label.id] = _label.color


def colorize_ids(label_ids: np.ndarray) -> np.ndarray:
    """Paint Cityscapes label ids (any shape, uint8) with every label's official colour: the
    ``*_gtFine_color.png`` image, and the generator's input X. Adds a trailing RGB axis."""
    return ID_TO_COLOR[np.asarray(label_ids, dtype=np.uint8)]


def _decoding_candidates() -> tuple[np.ndarray, np.ndarray]:
    """(colours (K, 3) int64, label ids (K,)) of the distinct label colours, lowest id first.

    Labels that share a colour cannot be told apart in a colour file; the lowest label id wins:
    - black (0, 0, 0): unlabeled, ego vehicle, rectification border, out of roi, static -> unlabeled.
      All five are train id 255, so the choice never changes the ground truth.
    - (153, 153, 153): pole (17) and polegroup (18) -> pole. ``json2labelImg`` paints a polegroup
      polygon (a cluster of poles annotated as one) with the pole colour, so the colour file holds
      no trace of the difference. Pole is the evaluated class (polegroup a rarer annotation of the
      same objects); taking polegroup would drop every pole pixel from the ground truth. The price:
      polegroup pixels, ignored in the labelIds ground truth, are scored as pole when ground truth
      comes from colours.
    - license plate (id -1) shares car's colour but is never drawn (``json2labelImg`` skips
      negative ids), so it is not a candidate.
    Exact ties between different colours also go to the lowest label id.
    """
    colours, ids = [], []
    for label in sorted((label for label in _CITYSCAPES_LABELS if label.id >= 0), key=lambda label: label.id):
        if label.color not in colours:
            colours.append(label.color)
            ids.append(label.id)
    return np.array(colours, dtype=np.int64), np.array(ids, dtype=np.uint8)


_CANDIDATE_COLORS, _CANDIDATE_IDS = _decoding_candidates()
_UNKNOWN = 255  # no label id is 255
_NEAREST_ID = np.full(1 << 24, _UNKNOWN, dtype=np.uint8)  # packed RGB -> label id, filled on demand


def _nearest_label_ids(packed: np.ndarray) -> np.ndarray:
    """Label id of the nearest candidate colour (exact integer L2, first candidate on ties)."""
    rgb = np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], axis=1).astype(np.int64)
    # ||x - c||^2 - ||x||^2 = ||c||^2 - 2 x.c, in exact integers
    score = (_CANDIDATE_COLORS**2).sum(axis=1)[None, :] - 2 * rgb @ _CANDIDATE_COLORS.T
    return _CANDIDATE_IDS[score.argmin(axis=1)]


def decode_label_ids(rgb: np.ndarray) -> np.ndarray:
    """Colour label image(s) (..., 3) uint8 -> Cityscapes label ids (...) uint8: each pixel takes
    the label of the nearest official colour (L2 in RGB) among *all* labels; see
    :func:`_decoding_candidates` for labels that share a colour.

    A lookup table over all 2^24 colours (16 MiB) is filled on demand, so a split of exact colour
    files costs one table lookup per pixel, and a JPEG-compressed one a little more. Safe to call
    from several threads (every entry is only ever written with its one value).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise ValueError(f"expected uint8 colour images of shape (..., 3), got {rgb.dtype} {rgb.shape}")
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    ids = _NEAREST_ID[packed]
    unknown = ids == _UNKNOWN
    if unknown.any():
        new = np.unique(packed[unknown])
        _NEAREST_ID[new] = _nearest_label_ids(new)
        ids[unknown] = _NEAREST_ID[packed[unknown]]
    return ids


def decode_ground_truth(rgb: np.ndarray) -> np.ndarray:
    """Colour label image(s) (..., 3) uint8 -> train ids (...) uint8, 255 for every class that is
    not evaluated: :func:`decode_label_ids`, then the official id -> train id table. The rule for
    ground truth stored as colours (``*_gtFine_color.png``, the pix2pix and CycleGAN layouts)."""
    return ID_TO_TRAIN_ID[decode_label_ids(rgb)]


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
    """Map generated colour label images to train ids by the nearest train-class colour (L2 in RGB).

    This is the paper's photo->labels scoring rule: a generated colour label image is decoded pixel
    by pixel to the nearest of the 19 train-class colours (``void=False``), so every pixel gets a
    class. With ``void=True`` black (0, 0, 0) is an extra candidate that decodes to 255. Ground
    truth stored as colours is decoded by :func:`decode_ground_truth` instead, which knows every
    label's colour.

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
