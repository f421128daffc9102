"""One scoring path for everything that translates: validation split → translator → evaluators.

A :class:`Source` is anything that yields translated images for the validation split: a trained
run's G and F, a folder of generated images, a checkpoint from the authors' code, a null
translator (the floor), or the real photos themselves (the ceiling). :func:`score` feeds the
split through a source's translators in batches and through the evaluators (discovered through
the ``cgbench.evaluators`` entry points, built-ins included), the same way for every source, so
two sources' numbers differ only by their images. Writing the results into an MLflow run is
:mod:`cgbench.scoring.record`'s job.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from cgbench.data.sampler import to_uint8, to_unit_range
from cgbench.errors import CgbenchError, ConfigError, DataError
from cgbench.protocol import DIRECTIONS
from cgbench.plugins import Batch, EvalContext, Evaluator, Result, discover

DEFAULT_METRICS = ("fcn", "seg")

Translator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(inputs in [-1, 1] (B, 3, S, S), split indices (B,)) -> outputs: float in [-1, 1] or uint8
(B, 3, h, w); every evaluator resizes outputs to the label resolution itself."""


@dataclass
class Source:
    """Something that yields translated images for the validation split, per direction."""

    name: str  # what it is, for messages and the table row
    kind: str  # run | images | checkpoint | null | real
    image_size: int  # the generator resolution S: translators receive S×S inputs
    translators: dict[str, Translator]  # by direction
    details: dict[str, Any] = field(default_factory=dict)  # recorded in each scores.json

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(d for d in DIRECTIONS if d in self.translators)


@dataclass
class StreamStats:
    images: int = 0
    seconds: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)  # translate/<direction>, <evaluator>/<part>

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.nan


@dataclass
class Scored:
    """What :func:`score` returns: each evaluator's result, and how long it took."""

    source: Source
    evaluators: list[type[Evaluator]]
    results: dict[str, Result]
    stats: StreamStats


# --- choosing evaluators ------------------------------------------------------------------


def select_evaluators(names: list[str] | tuple[str, ...] | None,
                      options: dict[str, str] | None = None) -> list[type[Evaluator]]:
    """The installed evaluators named (comma-separated names allowed); unknown → error listing all.
    Each one checks ``options`` (``--set``) and what else it needs before any work (:meth:`Evaluator.check`)."""
    errors: dict[str, str] = {}
    installed = discover(errors)
    wanted: list[str] = []
    for item in names or DEFAULT_METRICS:
        wanted += [n.strip() for n in item.split(",") if n.strip()]
    out = []
    for name in dict.fromkeys(wanted):
        if name not in installed:
            broken = f" (entry point {name!r} is broken: {errors[name]})" if name in errors else ""
            raise CgbenchError(f"unknown evaluator {name!r}{broken}; installed evaluators: "
                               f"{', '.join(installed) or 'none'} (see cgbench eval --list)")
        out.append(installed[name])
    for cls in out:
        cls.check(options or {})
    return out


def evaluator_options(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``--set key=value`` items as evaluator options; every key must be one an installed evaluator
    declares (e.g. ``inception_weights`` of fid and kid), else one error listing the valid ones."""
    from cgbench.config import parse_set

    options = parse_set(items, example="inception_weights=PATH")
    known: dict[str, list[str]] = {}
    for name, cls in discover().items():
        for key in cls.options:
            known.setdefault(key, []).append(name)
    unknown = [key for key in options if key not in known]
    if unknown:
        valid = ", ".join(f"{key} ({'/'.join(names)})" for key, names in sorted(known.items())) or "none"
        raise ConfigError(f"unknown evaluator option {unknown[0]!r}; valid options: {valid} (see cgbench eval --list)")
    return options


def evaluator(name: str) -> type[Evaluator]:
    """One installed evaluator by name (built-ins are found through the entry points too)."""
    return select_evaluators([name])[0]


# --- the split and what the translators see ---------------------------------------------------


def load_val_split(root: Path, image_size: int, prep: str = "clean"):
    """The validation split: labels at native resolution, photos and colour label maps X at the
    generator resolution, prepared as training data is (``prep``)."""
    from cgbench.data.layouts import load_split

    split = load_split(root, "val", photo_size=image_size, prep=prep)
    if len(split.labels) == 0:
        raise DataError(f"the validation split of {root} is empty; it needs labelled images to score")
    return split



def resize_labels(labels: torch.Tensor, size: int) -> torch.Tensor:
    """Train ids (B, H, W) → (B, size, size) by nearest neighbour (pixel centres, as PIL NEAREST)."""
    if tuple(labels.shape[-2:]) == (size, size):
        return labels
    return F.interpolate(labels[:, None].float(), size=(size, size), mode="nearest-exact")[:, 0].to(torch.uint8)


def resize_photos(photos: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 photos → (B, 3, size, size) uint8, bilinear with antialiasing (as the loader)."""
    if tuple(photos.shape[-2:]) == (size, size):
        return photos
    x = F.interpolate(photos.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def resize_nearest(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, C, H, W) → (B, C, size, size) by nearest neighbour (pixel centres, as PIL NEAREST)."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images.float(), size=(size, size), mode="nearest-exact").to(torch.uint8)


def translator_inputs(direction: str, images: torch.Tensor, size: int) -> torch.Tensor:
    """What the generator sees, as in training: the colour label maps X (labels2photo, a split's
    ``label_colors``) or photos (photo2labels), uint8, as size×size squares in [-1, 1]. The val
    split holds both at the generator resolution already; other sizes resize (X nearest, photos
    bilinear)."""
    resize = resize_nearest if direction == "labels2photo" else resize_photos
    return to_unit_range(resize(images, size))


def domain_images(split, direction: str) -> torch.Tensor:
    """A split's inputs of ``direction``: its colour label maps X (labels2photo) or photos."""
    return split.label_colors if direction == "labels2photo" else split.photos


def output_file_name(name: str, direction: str) -> str:
    """Where a translated image is saved: the ground truth's name, as a photo (labels2photo,
    ``..._leftImg8bit.png``) or a colour label image (photo2labels, ``..._gtFine_color.png``)."""
    if direction == "photo2labels" and name.endswith("_leftImg8bit"):
        return name.removesuffix("_leftImg8bit") + "_gtFine_color.png"
    return name + ".png"


# --- streaming ----------------------------------------------------------------------------


def _add(parts: dict[str, float], key: str, since: float) -> None:
    parts[key] = parts.get(key, 0.0) + time.perf_counter() - since


def _batch(context: EvalContext, direction: str, start: int, stop: int, translator: Translator) -> Batch:
    """One batch of the split, translated in ``direction``."""
    split, device = context.split, context.device
    n = len(split.labels)
    index = torch.arange(start, stop)
    names = split.names[start:stop] if len(split.names) == n else [f"{i:06d}" for i in range(start, stop)]
    labels = split.labels[start:stop].to(device, non_blocking=True)
    inputs = translator_inputs(direction, domain_images(split, direction)[start:stop].to(device), context.image_size)
    out = translator(inputs, index)
    outputs = out if out.dtype == torch.uint8 else to_uint8(out)
    return Batch(index=index, names=list(names), labels=labels, inputs=inputs, outputs=outputs)


def stream(
    evaluators: list[Evaluator],
    context: EvalContext,
    translators: dict[str, Translator],
    progress: bool = True,
    save_dir: Path | None = None,
    desc: str = "eval",
) -> StreamStats:
    """Feed the split through the translators and evaluators, batch by batch, without grads;
    with ``save_dir``, also write each translated image there as a lossless PNG."""
    from tqdm.auto import tqdm

    n = len(context.split.labels)
    directions = [d for d in DIRECTIONS if any(e.direction == d for e in evaluators)]
    missing = [d for d in directions if d not in translators]
    if missing:
        raise CgbenchError(f"this source has no {' or '.join(missing)} translation; drop the evaluators of that "
                           "direction (see cgbench eval --list)")
    stats = StreamStats()
    writer = ThreadPoolExecutor(max_workers=2) if save_dir is not None else None
    pending = []
    bar = tqdm(total=n, disable=not progress, unit="img", desc=desc, dynamic_ncols=True, leave=False)
    start_all = time.perf_counter()
    try:
        with torch.inference_mode():
            for start in range(0, n, context.batch_size):
                stop = min(n, start + context.batch_size)
                for direction in directions:
                    t = time.perf_counter()
                    batch = _batch(context, direction, start, stop, translators[direction])
                    _add(stats.parts, f"translate/{direction}", t)
                    for ev in evaluators:
                        if ev.direction == direction:
                            t = time.perf_counter()
                            ev.update(batch)
                            _add(stats.parts, ev.name, t)
                    if writer is not None:
                        pending.append(writer.submit(_save_pngs, save_dir / direction, batch.names, direction,
                                                     batch.outputs.permute(0, 2, 3, 1).cpu().numpy()))
                bar.update(stop - start)
        for job in pending:
            job.result()
    finally:
        bar.close()
        if writer is not None:
            writer.shutdown()
    stats.seconds = time.perf_counter() - start_all
    stats.images = n
    for ev in evaluators:
        for part, seconds in ev.seconds.items():
            stats.parts[f"{ev.name}/{part}"] = seconds
    return stats


def _save_pngs(folder: Path, names: list[str], direction: str, images: np.ndarray) -> None:
    from PIL import Image

    for name, image in zip(names, images):
        path = folder / output_file_name(name, direction)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, format="PNG")


def score(
    source: Source,
    classes: list[type[Evaluator]],
    context: EvalContext,
    progress: bool = True,
    save_dir: Path | None = None,
    desc: str = "eval",
) -> Scored:
    """Every evaluator in ``classes`` on ``source``'s translations of the split in ``context``."""
    if context.image_size != source.image_size:
        raise DataError(f"{source.name} translates {source.image_size}-px inputs, but the split was prepared for "
                        f"{context.image_size} px")
    evaluators = [c(context) for c in classes]
    stats = stream(evaluators, context, source.translators, progress=progress, save_dir=save_dir, desc=desc)
    return Scored(source, classes, {ev.name: ev.compute() for ev in evaluators}, stats)
