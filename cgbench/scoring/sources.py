"""The sources of translated validation images that cgbench scores itself.

* :func:`run_source`: a trained run's G (labels→photo) and F (photo→labels), from its checkpoint.
* :func:`real_photos`: the real validation photos as if a translator had made them — the FCN
  score's ceiling (the tables' "ground truth" row).
* :func:`null_sources`: translators that learned nothing — the floor every trained row must
  clear (docs/protocol.md#floor-and-ceiling-rows):

  ========================  =============  ====================================================
  row                       direction      output for every input
  ========================  =============  ====================================================
  ``null-identity``         labels→photo   the colour label map itself, given as the photo
  ``null-mean-photo``       labels→photo   the mean training photo (one constant image)
  ``null-random-photo``     labels→photo   the real photo of another scene (a seeded derangement)
  ``null-majority-labels``  photo→labels   the per-pixel majority label map of the training split
  ``null-random-labels``    photo→labels   the label map of another scene (the same derangement)
  ========================  =============  ====================================================

Folders of images and external checkpoints are in :mod:`cgbench.scoring.external`.
"""

from __future__ import annotations

import numpy as np
import torch

from cgbench.config import Config
from cgbench.data.labels import NUM_CLASSES, colorize
from cgbench.scoring.engine import Source, resize_labels, resize_photos


def run_source(config: Config, state: dict, run_id: str, device: torch.device) -> Source:
    """A trained run's translators, with the networks of its checkpoint ``state`` (evaluation mode)."""
    from cgbench.methods import get_method

    method = get_method(config.method)(config, device)
    method.load_translators(state["method"]["networks"])
    method.train(False)
    return Source(
        name=f"run {run_id}", kind="run", image_size=config.image_size,
        translators={"labels2photo": lambda x, _: method.labels_to_photo(x),
                     "photo2labels": lambda y, _: method.photo_to_labels(y)},
        details={"run_id": run_id, "method": config.method, "step": int(state.get("iteration", 0))},
    )


def real_photos(split, image_size: int) -> Source:
    """The validation photos themselves (already at the generator resolution): the ceiling."""
    def photos(_inputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return resize_photos(split.photos[index], image_size).to(_inputs.device)

    return Source("ground truth", "real", image_size, {"labels2photo": photos})


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(n)`` that maps no index to itself (Sattolo's algorithm:
    a uniformly random single cycle). ``n`` must be at least 2."""
    if n < 2:
        raise ValueError("a derangement needs at least 2 items")
    rng = np.random.default_rng([seed, 11])
    order = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))  # j < i: the element at i never stays
        order[i], order[j] = order[j], order[i]
    return order


def mean_photo(photos: torch.Tensor, image_size: int) -> torch.Tensor:
    """The mean of uint8 photos (N, 3, H, W) at ``image_size``, as one uint8 image (3, S, S)."""
    total = torch.zeros(3, image_size, image_size, dtype=torch.float64)
    for start in range(0, len(photos), 256):
        total += resize_photos(photos[start:start + 256], image_size).double().sum(0)
    return (total / len(photos)).round().clamp(0, 255).to(torch.uint8)


def majority_labels(labels: torch.Tensor, image_size: int) -> torch.Tensor:
    """The per-pixel most frequent train id of label maps (N, H, W) at ``image_size`` (nearest),
    ignored pixels left out; ties go to the lower id, and a pixel ignored in every map is 0."""
    counts = torch.zeros(NUM_CLASSES, image_size, image_size, dtype=torch.int64)
    for start in range(0, len(labels), 256):
        small = resize_labels(labels[start:start + 256], image_size).long()
        for c in range(NUM_CLASSES):
            counts[c] += (small == c).sum(0)
    return counts.argmax(0).to(torch.uint8)


def _constant(image: torch.Tensor):
    def translate(inputs: torch.Tensor, _index: torch.Tensor) -> torch.Tensor:
        return image.to(inputs.device).expand(len(inputs), *image.shape)
    return translate


def null_sources(train_split, val_split, image_size: int, seed: int = 0) -> dict[str, Source]:
    """The five null translators (see the module's table), by row. Means and majorities come from
    ``train_split``; "another scene" is a seeded derangement of ``val_split``."""
    other = torch.from_numpy(derangement(len(val_split.labels), seed))

    def another_photo(inputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return resize_photos(val_split.photos[other[index]], image_size).to(inputs.device)

    def another_label_map(inputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        labels = resize_labels(val_split.labels[other[index]], image_size)
        return colorize(labels).permute(0, 3, 1, 2).to(inputs.device)

    def identity(inputs: torch.Tensor, _index: torch.Tensor) -> torch.Tensor:
        return inputs

    majority = colorize(majority_labels(train_split.labels, image_size)).permute(2, 0, 1)
    derangement_seed = {"derangement_seed": seed}
    rows = {
        "null-identity": ("labels2photo", identity, {}),
        "null-mean-photo": ("labels2photo", _constant(mean_photo(train_split.photos, image_size)), {}),
        "null-random-photo": ("labels2photo", another_photo, derangement_seed),
        "null-majority-labels": ("photo2labels", _constant(majority), {}),
        "null-random-labels": ("photo2labels", another_label_map, derangement_seed),
    }
    return {row: Source(row, "null", image_size, {direction: fn}, {"row": row, **extra})
            for row, (direction, fn, extra) in rows.items()}
