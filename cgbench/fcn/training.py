"""Training the evaluator network behind the FCN score.

``train_fcn`` trains a segmenter (``fcn_arch``: the CPU-sized FCN-8s of
:mod:`cgbench.models.segmenter`, or torchvision's ``fcn_resnet50``, never pretrained) on the
real training photos and their ground truth the way the paper's FCN was trained: each photo is
downsampled to the generator's resolution (``image_size``, bilinear with antialiasing, as the
loader resizes training photos) and upsampled back bilinearly to the label resolution
(:func:`cgbench.protocol.segmenter_input`); the loss is cross-entropy against the native-resolution
labels with ignored pixels (255) left out. The run is tracked in MLflow like any run (tags
``cgbench.method=fcn``, ``cgbench.dataset_digest`` = the training split's digest, the same one
``cgbench run`` records, ``cgbench.image_size``), logs ``loss/fcn`` per step, and ends with its
own score on the real validation photos degraded the same way — the tables' "ground truth" row,
the ceiling of the FCN score — under ``eval/ground_truth/...``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cgbench.config import Config
from cgbench.data.labels import IGNORE_INDEX, NUM_CLASSES
from cgbench.devices import resolve_device
from cgbench.errors import CgbenchError, ConfigError, DataError
from cgbench.fcn.ceiling import degradation_ladder, ground_truth_scores, record_ladder
from cgbench.fcn.checkpoint import checkpoint_state
from cgbench.models.segmenter import SEGMENTER_ARCHS, build_segmenter
from cgbench.protocol import FCN_METHOD, GROUND_TRUTH_PREFIX, Tags, segmenter_input
from cgbench.scoring.record import write_result
from cgbench.tracking import RunTracker, start_run
from cgbench.plugins import Result


def validate_fcn_config(config: Config) -> None:
    if config.fcn_arch not in SEGMENTER_ARCHS:
        raise ConfigError(f"fcn_arch {config.fcn_arch!r} is not one of: {', '.join(SEGMENTER_ARCHS)}")
    for key in ("fcn_width", "fcn_batch_size"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{key} must be >= 1, got {getattr(config, key)}")
    if config.fcn_crop < 0 or 0 < config.fcn_crop < 32:
        raise ConfigError(f"fcn_crop must be 0 (whole images) or >= 32, got {config.fcn_crop}")
    if config.fcn_epochs <= 0 or config.fcn_lr <= 0 or config.fcn_weight_decay < 0:
        raise ConfigError("fcn_epochs and fcn_lr must be > 0 and fcn_weight_decay >= 0")
    if config.image_size < 8:
        raise ConfigError(f"image_size {config.image_size} is too small; use the generator's resolution, e.g. 64")


@dataclass
class FCNTrainResult:
    run_id: str
    iterations: int
    seconds: float
    ground_truth: Result


def _lr_factor(step: int, total: int) -> float:
    """Linear warm-up over the first 3% of steps, then cosine decay to 0."""
    warm = max(1, int(0.03 * total))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train_fcn(
    config: Config,
    tracking_uri: str | None = None,
    experiment: str = "cgbench",
    preset: str | None = None,
    run_name: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> FCNTrainResult:
    """Train the evaluator FCN for ``config``'s data and image size; record it in MLflow."""
    from cgbench.data import datasets
    from cgbench.data.layouts import load_split

    validate_fcn_config(config)
    device = resolve_device(config.device)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    ref = datasets.resolve(config.data, config.image_size, echo=echo)
    train_split = load_split(ref.root, "train", photo_size=config.image_size, prep=config.prep)
    if not train_split.paired:
        raise DataError(f"the training split of {ref.root} pairs no photo with its labels; the FCN needs paired data")
    val_split = load_split(ref.root, "val", photo_size=config.image_size, prep=config.prep)
    total = max(1, round(config.fcn_epochs * _steps_per_epoch(config, len(train_split.photos))))
    tracker = _start_fcn_run(config, ref, train_split, val_split, total, tracking_uri, experiment, preset, run_name)
    echo(f"MLflow run {tracker.run_id} ({tracker.name}) in experiment {experiment!r}: {config.fcn_arch} on "
         f"{len(train_split.photos)} photos of {ref.root} at {config.image_size} px, {total} iterations.")
    with tracker.ending():
        torch.manual_seed(config.seed)
        model = build_segmenter(config.fcn_arch, NUM_CLASSES, config.fcn_width).to(device)
        t0 = time.perf_counter()
        _fit(model, config, train_split, total, device, tracker, progress)
        seconds = time.perf_counter() - t0
        tracker.log_metrics({"perf/train_seconds": seconds}, total)
        result, stats = ground_truth_scores(model, val_split, config.image_size, device,
                                            max(1, config.fcn_batch_size), progress=progress)
        tracker.save_checkpoint(checkpoint_state(model, config, total, result.metrics), total)
        record_ladder(tracker, result.metrics, degradation_ladder(model, val_split, config.image_size, device,
                                                                  max(1, config.fcn_batch_size)), total, echo)
        write_result(tracker, GROUND_TRUTH_PREFIX, result, total, {
            "evaluator": "ground_truth", "direction": "labels2photo",
            "description": "the FCN on real val photos, resized to the generator resolution and back",
            "fcn_run_id": tracker.run_id, "val_digest": val_split.digest, "n_images": stats.images,
            "generator_resolution": config.image_size, "label_resolution": list(val_split.labels.shape[-2:]),
            "train_seconds": seconds,
        })
    return FCNTrainResult(tracker.run_id, total, seconds, result)


def _steps_per_epoch(config: Config, n: int) -> int:
    return max(1, math.ceil(n / config.fcn_batch_size))


def _start_fcn_run(config: Config, ref, train_split, val_split, total: int, tracking_uri: str | None,
                   experiment: str, preset: str | None, run_name: str | None) -> RunTracker:
    size = config.image_size
    tags = {
        Tags.METHOD: FCN_METHOD,
        Tags.FCN_ARCH: config.fcn_arch,
        Tags.DATASET: ref.name,
        Tags.DATASET_DIGEST: train_split.digest,
        Tags.DATASET_LAYOUT: train_split.layout,
        Tags.IMAGE_SIZE: str(size),
        Tags.PREP: config.prep,
        Tags.PRESET: preset or "",
        Tags.SEED: str(config.seed),
    }
    keys = ("data", "image_size", "prep", "seed", "device") + tuple(k for k in config.to_dict() if k.startswith("fcn_"))
    params = {**{k: getattr(config, k) for k in keys}, "total_iterations": total,
              "train_images": len(train_split.photos), "val_images": len(val_split.labels),
              "label_resolution": "x".join(map(str, train_split.labels.shape[-2:][::-1]))}
    root = str(ref.root.resolve())
    return start_run(tracking_uri, experiment, run_name or f"fcn-{config.fcn_arch}-{size}px-seed{config.seed}",
                     tags, params, config.to_dict(),
                     datasets=[(ref.name, root, train_split.digest, "training"),
                               (ref.name + "-val", root, val_split.digest, "evaluation")])


def _batch(config: Config, split, step: int, steps_per_epoch: int, device: torch.device):
    """The photos (as the FCN sees them) and labels of ``step``: a seeded order per epoch, seeded
    flips, and one seeded crop window per batch cut after the resize down and up."""
    n, size = len(split.photos), config.fcn_batch_size
    epoch, offset = divmod(step, steps_per_epoch)
    order = np.random.default_rng([config.seed, 5, epoch]).permutation(n)
    index = torch.from_numpy(order[offset * size : (offset + 1) * size])
    x = split.photos[index].to(device, non_blocking=True)
    y = split.labels[index].to(device, non_blocking=True)
    flip = torch.from_numpy(np.random.default_rng([config.seed, 6, step]).random(len(index)) < 0.5).to(device)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    y = torch.where(flip[:, None, None], y.flip(-1), y)
    hw = y.shape[-2:]
    x = segmenter_input(x, hw)
    if config.fcn_crop:
        rng = np.random.default_rng([config.seed, 7, step])
        ch, cw = min(config.fcn_crop, hw[0]), min(config.fcn_crop, hw[1])
        top, left = int(rng.integers(0, hw[0] - ch + 1)), int(rng.integers(0, hw[1] - cw + 1))
        x, y = x[..., top : top + ch, left : left + cw], y[..., top : top + ch, left : left + cw]
    return x, y


def _fit(model: nn.Module, config: Config, split, total: int, device: torch.device, tracker: RunTracker,
         progress: bool) -> None:
    """The FCN's training loop: AdamW, warm-up then cosine decay, cross-entropy with ignored pixels left out."""
    from tqdm.auto import tqdm

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.fcn_lr, weight_decay=config.fcn_weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, total))
    steps_per_epoch = _steps_per_epoch(config, len(split.photos))
    model.train()
    with tqdm(total=total, disable=not progress, unit="it", desc="fcn", dynamic_ncols=True, leave=False) as bar:
        for step in range(total):
            x, y = _batch(config, split, step, steps_per_epoch, device)
            loss = F.cross_entropy(model(x), y.long(), ignore_index=IGNORE_INDEX)
            if not torch.isfinite(loss):
                if bool((y != IGNORE_INDEX).any()):
                    raise CgbenchError(f"the FCN loss became {loss.item()} at iteration {step + 1}; "
                                       "lower fcn_lr (e.g. --set fcn_lr=3e-4)")
                scheduler.step()
                continue  # a batch with no labelled pixel: nothing to learn
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            tracker.log_metrics({"loss/fcn": loss.item(), "lr": scheduler.get_last_lr()[0]}, step + 1)
            if (step + 1) % 100 == 0:
                tracker.flush()
            bar.set_postfix({"loss": f"{loss.item():.3f}"}, refresh=False)
            bar.update(1)
