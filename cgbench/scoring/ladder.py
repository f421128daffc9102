"""The evaluator's degradation ladder: does the FCN score see quality?

Real validation photos (at the generator's resolution, as a generator would output them) are
damaged in graded steps and scored like any translation. An evaluator worth trusting scores
each step no higher than the one before: a ladder that does not fall is reported as an error of
the FCN. The rungs:

===========  ==========================  ===================================================
damage       levels                      what it does to each S×S photo
===========  ==========================  ===================================================
``blur``     σ = 1, 2, 4 pixels          Gaussian blur (kernel 6σ+1, reflect at the borders)
``jpeg``     quality 50, 20, 5           JPEG encoding and decoding (Pillow, 4:2:0)
``noise``    σ = 10, 25, 50 (of 255)     additive Gaussian noise, seeded, clipped to 0-255
``replace``  10%, 30%, 60%               that share of an 8×8 grid of cells, chosen at random,
                                         taken from another scene (a seeded derangement)
===========  ==========================  ===================================================
"""

from __future__ import annotations

import io
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cgbench.scoring.engine import Source, resize_photos
from cgbench.scoring.sources import derangement

LADDER: dict[str, tuple[float, ...]] = {
    "blur": (1.0, 2.0, 4.0),
    "jpeg": (50, 20, 5),
    "noise": (10.0, 25.0, 50.0),
    "replace": (0.1, 0.3, 0.6),
}
GRID = 8  # cells per side for "replace"


def rung_name(damage: str, level: float) -> str:
    """The rung's key in metric names, e.g. ``blur_2``, ``jpeg_20``, ``replace_30``."""
    value = level * 100 if damage == "replace" else level
    return f"{damage}_{value:g}"


def blur(photos: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    images = photos.float()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    out = F.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return out.round().clamp(0, 255).to(torch.uint8)


def jpeg(photos: torch.Tensor, quality: float) -> torch.Tensor:
    out = []
    for image in photos.permute(0, 2, 3, 1).numpy():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
        out.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def noise(photos: torch.Tensor, sigma: float, index: torch.Tensor, seed: int) -> torch.Tensor:
    """Seeded per image (its index in the split), so a rung is the same whatever the batching."""
    out = []
    for image, i in zip(photos, index.tolist()):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        out.append(image.float() + sigma * torch.randn(image.shape, generator=g))
    return torch.stack(out).round().clamp(0, 255).to(torch.uint8)


def replace(photos: torch.Tensor, others: torch.Tensor, fraction: float, index: torch.Tensor, seed: int) -> torch.Tensor:
    """``fraction`` of each image's GRID×GRID cells (rounded) taken from ``others``."""
    size = photos.shape[-1]
    cells = torch.arange(size) * GRID // size  # the cell of each row / column
    out = photos.clone()
    for k, i in enumerate(index.tolist()):
        rng = np.random.default_rng([seed, 13, i])
        chosen = torch.zeros(GRID * GRID, dtype=torch.bool)
        chosen[torch.from_numpy(rng.permutation(GRID * GRID)[: round(fraction * GRID * GRID)])] = True
        mask = chosen.view(GRID, GRID)[cells][:, cells]
        out[k][:, mask] = others[k][:, mask]
    return out


def rung_source(split, image_size: int, damage: str, level: float, seed: int = 0) -> Source:
    """The real validation photos with one rung's damage, as a source for the scoring engine."""
    other = torch.from_numpy(derangement(len(split.labels), seed))

    def damaged(inputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        photos = resize_photos(split.photos[index], image_size)
        if damage == "blur":
            out = blur(photos, level)
        elif damage == "jpeg":
            out = jpeg(photos, level)
        elif damage == "noise":
            out = noise(photos, level, index, seed)
        else:
            out = replace(photos, resize_photos(split.photos[other[index]], image_size), level, index, seed)
        return out.to(inputs.device)

    return Source(rung_name(damage, level), "real", image_size, {"labels2photo": damaged},
                  {"damage": damage, "level": level})


def falls(scores: list[float]) -> bool:
    """Each rung no higher than the one before (the first entry: the undamaged photos)."""
    return all(b <= a for a, b in zip(scores, scores[1:]))


def ladder_figure(clean: dict[str, float], rungs: dict[str, dict[str, float]], metrics: tuple[str, ...]):
    """One panel per damage: each metric against the damage level, the clean score at level 0."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 2.8))
    axes = fig.subplots(1, len(LADDER), sharey=True)
    for ax, (damage, levels) in zip(axes, LADDER.items()):
        xs = ["clean"] + [f"{rung_name(damage, level).split('_')[1]}" for level in levels]
        for m in metrics:
            ax.plot(xs, [clean[m]] + [rungs[rung_name(damage, lv)][m] for lv in levels], marker="o", label=m)
        ax.set_title(damage, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0].set_ylabel("FCN score of real photos", fontsize=8)
    axes[-1].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig

