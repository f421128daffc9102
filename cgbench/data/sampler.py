"""Unpaired (and, for pix2pix, paired) batches for training, as a pure function of (seed, step).

X (label maps, as official-colour images) is walked in a seeded random order, one permutation per
epoch; Y (photos) is drawn uniformly at random, independently of X — the paper's unaligned
sampling. With ``disjoint`` the two are drawn from disjoint halves of the training scenes, so no
(label, photo) pair of the same scene is ever seen. Each image is randomly cropped to
``image_size`` and flipped horizontally with probability 1/2, then scaled to [-1, 1].

:class:`PairedSampler` gives the label map and photo of the same scene, with the same crop and
flip, for the paired upper bound.

Because a batch depends only on (seed, step), resuming at step t needs no sampler state.
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
    ):
        """``x_images``: colour label maps, ``y_images``: photos; uint8 (N, 3, L, L), same scenes."""
        n = len(x_images)
        if disjoint:
            order = np.random.default_rng([seed, 1]).permutation(n)
            self.x_indices, self.y_indices = np.sort(order[: n // 2]), np.sort(order[n // 2 :])
        else:
            self.x_indices = self.y_indices = np.arange(n)
        self.x_images, self.y_images = x_images, y_images
        self.image_size, self.batch_size, self.seed, self.flip = image_size, batch_size, seed, flip

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.x_indices) // self.batch_size)

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene indices of X and Y for ``step`` (0-based)."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.seed, 2, epoch]).permutation(len(self.x_indices))
        x = self.x_indices[perm[offset * self.batch_size : (offset + 1) * self.batch_size]]
        y = np.random.default_rng([self.seed, 3, step]).choice(self.y_indices, size=self.batch_size)
        return x, y

    def batch(self, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x_index, y_index = self.indices(step)
        rng = np.random.default_rng([self.seed, 4, step])
        x = self._augment(self.x_images, x_index, rng)
        y = self._augment(self.y_images, y_index, rng)
        return to_unit_range(x.to(device, non_blocking=True)), to_unit_range(y.to(device, non_blocking=True))

    def _augment(self, images: torch.Tensor, index: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        load, crop = images.shape[-1], self.image_size
        out = []
        for i in index:
            top, left = rng.integers(0, load - crop + 1, size=2)
            image = images[i, :, top : top + crop, left : left + crop]
            if self.flip and rng.random() < 0.5:
                image = image.flip(-1)
            out.append(image)
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

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.x_images) // self.batch_size)

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene indices of X and Y for ``step``: the same scenes."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.seed, 5, epoch]).permutation(len(self.x_images))
        index = perm[offset * self.batch_size : (offset + 1) * self.batch_size]
        return index, index.copy()

    def windows(self, step: int) -> list[tuple[int, int, int, bool]]:
        """(scene, top, left, flipped) of every pair in the batch of ``step``."""
        index, _ = self.indices(step)
        rng = np.random.default_rng([self.seed, 6, step])
        load, crop = self.x_images.shape[-1], self.image_size
        out = []
        for i in index:
            top, left = rng.integers(0, load - crop + 1, size=2)
            flipped = bool(self.flip and rng.random() < 0.5)
            out.append((int(i), int(top), int(left), flipped))
        return out

    def batch(self, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        crop = self.image_size
        xs, ys = [], []
        for i, top, left, flipped in self.windows(step):
            for images, out in ((self.x_images, xs), (self.y_images, ys)):
                image = images[i, :, top : top + crop, left : left + crop]
                out.append(image.flip(-1) if flipped else image)
        x, y = torch.stack(xs), torch.stack(ys)
        return to_unit_range(x.to(device, non_blocking=True)), to_unit_range(y.to(device, non_blocking=True))
