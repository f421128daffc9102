"""Unpaired (and, for pix2pix, paired) batches for training, as a pure function of (seed, step).

X (label maps: every label in its official colour, ``Split.label_colors``) is walked in a seeded
random order, one permutation per epoch; Y (photos) is drawn uniformly at random, independently of
X — the paper's unaligned sampling. With ``disjoint`` the two are drawn from disjoint halves of the
training scenes, so no (label, photo) pair of the same scene is ever seen. Each image is randomly
cropped to ``image_size`` and flipped horizontally with probability 1/2, then scaled to [-1, 1].

:class:`PairedSampler` gives the label map and photo of the same scene, with the same crop and
flip, for the paired upper bound.

Because a batch depends only on (seed, step), resuming at step t needs no sampler state.

With several processes (``world_size`` > 1) every rank computes the same *global* batch of
``world_size * batch_size`` images for a step — X's scenes from the epoch's permutation, Y's
drawn, then the crops and flips, all in the order a single process would draw them for a batch
of that size — and keeps its own block of ``batch_size`` (rank r the r-th). An epoch is then
``images // (batch_size * world_size)`` steps. With ``world_size`` 1 the batches are exactly those
of a single process.
"""

from __future__ import annotations

import numpy as np
import torch


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] → uint8 [0, 255]."""
    return images.detach().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


class UnpairedSampler:
    def __init__(
        self,
        x_images: torch.Tensor,
        y_images: torch.Tensor,
        image_size: int,
        batch_size: int,
        seed: int,
        flip: bool = True,
        disjoint: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        """``x_images``: colour label maps (X), ``y_images``: photos (Y); uint8 (N, 3, L, L), same scenes.
        ``rank`` of ``world_size`` processes: which block of each step's global batch to keep."""
        n = len(x_images)
        if disjoint:
            order = np.random.default_rng([seed, 1]).permutation(n)
            self.x_indices, self.y_indices = np.sort(order[: n // 2]), np.sort(order[n // 2 :])
        else:
            self.x_indices = self.y_indices = np.arange(n)
        self.x_images, self.y_images = x_images, y_images
        self.image_size, self.batch_size, self.seed, self.flip = image_size, batch_size, seed, flip
        self.rank, self.world_size = _check_shard(rank, world_size, batch_size, len(self.x_indices))

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.x_indices) // self.global_batch_size)

    def global_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene indices of X and Y of the whole step (every rank's block), 0-based ``step``."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        size = self.global_batch_size
        perm = np.random.default_rng([self.seed, 2, epoch]).permutation(len(self.x_indices))
        x = self.x_indices[perm[offset * size : (offset + 1) * size]]
        y = np.random.default_rng([self.seed, 3, step]).choice(self.y_indices, size=size)
        return x, y

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene indices of X and Y of this rank's batch for ``step`` (0-based)."""
        x, y = self.global_indices(step)
        block = self._block()
        return x[block], y[block]

    def batch(self, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x_index, y_index = self.global_indices(step)
        rng = np.random.default_rng([self.seed, 4, step])
        x_windows = _draw_windows(rng, len(x_index), self.x_images.shape[-1], self.image_size, self.flip)
        y_windows = _draw_windows(rng, len(y_index), self.y_images.shape[-1], self.image_size, self.flip)
        block = self._block()
        x = _cut(self.x_images, x_index[block], x_windows[block], self.image_size)
        y = _cut(self.y_images, y_index[block], y_windows[block], self.image_size)
        return to_unit_range(x.to(device, non_blocking=True)), to_unit_range(y.to(device, non_blocking=True))

    def _block(self) -> slice:
        return slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)


def _check_shard(rank: int, world_size: int, batch_size: int, images: int) -> tuple[int, int]:
    from cgbench.errors import ConfigError

    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size}")
    if images < batch_size * world_size:
        raise ConfigError(f"{world_size} processes x batch_size {batch_size} need at least "
                          f"{batch_size * world_size} training images, the data has {images}; use fewer processes")
    return rank, world_size


def _draw_windows(rng: np.random.Generator, count: int, load: int, crop: int, flip: bool) -> list[tuple[int, int, bool]]:
    """(top, left, flipped) of ``count`` images, drawn from ``rng`` in the order the batch uses them."""
    out = []
    for _ in range(count):
        top, left = rng.integers(0, load - crop + 1, size=2)
        flipped = bool(flip and rng.random() < 0.5)
        out.append((int(top), int(left), flipped))
    return out


def _cut(images: torch.Tensor, index: np.ndarray, windows: list[tuple[int, int, bool]], crop: int) -> torch.Tensor:
    out = []
    for i, (top, left, flipped) in zip(index, windows):
        image = images[i, :, top : top + crop, left : left + crop]
        out.append(image.flip(-1) if flipped else image)
    return torch.stack(out)


class PairedSampler:
    """Paired batches for the supervised upper bound (pix2pix), as a pure function of (seed, step).

    The scenes are walked in a seeded random order, one permutation per epoch, and each batch
    holds the label map and the photo of the *same* scenes, cut by the *same* random crop and
    flipped together. Same constructor as :class:`UnpairedSampler`, so the trainer can pick
    either; ``disjoint`` contradicts pairing and is refused.
    """

    def __init__(
        self,
        x_images: torch.Tensor,
        y_images: torch.Tensor,
        image_size: int,
        batch_size: int,
        seed: int,
        flip: bool = True,
        disjoint: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        from cgbench.errors import ConfigError

        if disjoint:
            raise ConfigError("a paired method (pix2pix) trains on (labels, photo) pairs of the same scenes; "
                              "set disjoint=false")
        if len(x_images) != len(y_images):
            raise ConfigError(f"paired training needs as many label maps as photos ({len(x_images)} vs "
                              f"{len(y_images)})")
        self.x_images, self.y_images = x_images, y_images
        self.image_size, self.batch_size, self.seed, self.flip = image_size, batch_size, seed, flip
        self.rank, self.world_size = _check_shard(rank, world_size, batch_size, len(x_images))

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.x_images) // self.global_batch_size)

    def global_indices(self, step: int) -> np.ndarray:
        """Scene indices of the whole step (every rank's block)."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        size = self.global_batch_size
        perm = np.random.default_rng([self.seed, 5, epoch]).permutation(len(self.x_images))
        return perm[offset * size : (offset + 1) * size]

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene indices of X and Y of this rank's batch for ``step``: the same scenes."""
        index = self.global_indices(step)[self._block()]
        return index, index.copy()

    def windows(self, step: int) -> list[tuple[int, int, int, bool]]:
        """(scene, top, left, flipped) of every pair in this rank's batch of ``step``."""
        index = self.global_indices(step)
        rng = np.random.default_rng([self.seed, 6, step])
        drawn = _draw_windows(rng, len(index), self.x_images.shape[-1], self.image_size, self.flip)
        block = self._block()
        return [(int(i), top, left, flipped) for i, (top, left, flipped) in zip(index[block], drawn[block])]

    def _block(self) -> slice:
        return slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)

    def batch(self, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        crop = self.image_size
        xs, ys = [], []
        for i, top, left, flipped in self.windows(step):
            for images, out in ((self.x_images, xs), (self.y_images, ys)):
                image = images[i, :, top : top + crop, left : left + crop]
                out.append(image.flip(-1) if flipped else image)
        x, y = torch.stack(xs), torch.stack(ys)
        return to_unit_range(x.to(device, non_blocking=True)), to_unit_range(y.to(device, non_blocking=True))
