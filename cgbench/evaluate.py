"""Scoring a trained run with the paper's protocol and writing the results into that run.

``evaluate(run_id, ["fcn", "seg"])`` rebuilds the run's method from its recorded ``config.json``,
loads only its networks from the newest checkpoint, streams the validation split through the
translators in batches and through every selected evaluator (discovered via the
``cgbench.evaluators`` entry points), and records in the evaluated run:

* metrics ``<prefix>/<metric>`` (built-ins: ``eval/labels2photo/...`` and ``eval/photo2labels/...``)
  at the run's final iteration as step;
* artifacts under ``<prefix>/``: ``scores.json`` (metrics, per-class values, evaluated class names,
  FCN used, data digest), ``per_class.csv``, ``confusion.png``, ``samples.png`` and, with
  ``save_images``, the translated images as lossless PNGs under the ground truth's file names;
* with the FCN score, the FCN's own "ground truth" scores as ``eval/ground_truth/...`` beside them.

Re-evaluating replaces: the evaluator's artifact folder is deleted and re-written, and metrics are
written with :meth:`RunTracker.log_result_metrics` (an identical value is not duplicated in the
metric history; a changed value becomes the displayed one and the old value stays in the history,
MLflow histories being append-only). The run's status is not touched.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from cgbench.data.labels import CLASS_NAMES
from cgbench.data.sampler import to_uint8, to_unit_range
from cgbench.errors import CgbenchError, DataError
from cgbench.tracking import TAG_PREFIX, RunTracker, client_for, get_run, load_run_checkpoint, recorded_config
from evaluators.base import (
    Batch, EvalContext, Evaluator, Result, Segmenter, discover, per_class_rows,
)

DEFAULT_METRICS = ("fcn", "seg")
GROUND_TRUTH_PREFIX = "eval/ground_truth"

Translator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(inputs in [-1, 1] (B, 3, S, S), split indices (B,)) -> outputs: float in [-1, 1] or uint8."""


@dataclass
class StreamStats:
    images: int = 0
    seconds: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)  # translate/<direction>, <evaluator>/<part>

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.nan


@dataclass
class EvalReport:
    run_id: str
    step: int
    results: dict[str, Result]
    stats: StreamStats
    fcn: Segmenter | None = None
    data_root: str = ""
    directions: dict[str, str] = field(default_factory=dict)  # evaluator name -> direction


# --- choosing evaluators ------------------------------------------------------------------


def select_evaluators(names: list[str] | tuple[str, ...] | None) -> list[type[Evaluator]]:
    """The installed evaluators named (comma-separated names allowed); unknown → error listing all."""
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
    return out


# --- streaming ----------------------------------------------------------------------------


def _resize_nearest(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, C, H, W) → (B, C, size, size) by nearest neighbour (pixel centres, as PIL NEAREST)."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images.float(), size=(size, size), mode="nearest-exact").to(torch.uint8)


def _resize_photos(photos: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 photos → (B, 3, size, size) uint8, bilinear with antialiasing (as the loader)."""
    if tuple(photos.shape[-2:]) == (size, size):
        return photos
    x = F.interpolate(photos.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def translator_inputs(direction: str, images: torch.Tensor, size: int) -> torch.Tensor:
    """What the generator sees, as in training: the colour label maps X (labels2photo, a split's
    ``label_colors``) or photos (photo2labels), uint8, as size×size squares in [-1, 1]. The val
    split holds both at the generator resolution already; other sizes resize (X nearest, photos
    bilinear)."""
    resize = _resize_nearest if direction == "labels2photo" else _resize_photos
    return to_unit_range(resize(images, size))


def output_file_name(name: str, direction: str) -> str:
    """Where a translated image is saved: the ground truth's name, as a photo (labels2photo,
    ``..._leftImg8bit.png``) or a colour label image (photo2labels, ``..._gtFine_color.png``)."""
    if direction == "photo2labels" and name.endswith("_leftImg8bit"):
        return name.removesuffix("_leftImg8bit") + "_gtFine_color.png"
    return name + ".png"


def stream(
    evaluators: list[Evaluator],
    context: EvalContext,
    translators: dict[str, Translator],
    progress: bool = True,
    save_dir: Path | None = None,
    desc: str = "eval",
) -> StreamStats:
    """Feed the split through the translators and evaluators, batch by batch, without grads."""
    from tqdm.auto import tqdm

    split, device, size = context.split, context.device, context.image_size
    n = len(split.labels)
    directions = [d for d in ("labels2photo", "photo2labels") if any(e.direction == d for e in evaluators)]
    stats = StreamStats()
    writer = ThreadPoolExecutor(max_workers=2) if save_dir is not None else None
    pending = []
    bar = tqdm(total=n, disable=not progress, unit="img", desc=desc, dynamic_ncols=True, leave=False)
    start_all = time.perf_counter()
    try:
        with torch.inference_mode():
            for start in range(0, n, context.batch_size):
                stop = min(n, start + context.batch_size)
                index = torch.arange(start, stop)
                names = split.names[start:stop] if len(split.names) == n else [f"{i:06d}" for i in range(start, stop)]
                labels = split.labels[start:stop].to(device, non_blocking=True)
                for direction in directions:
                    t = time.perf_counter()
                    images = split.photos if direction == "photo2labels" else split.label_colors
                    inputs = translator_inputs(direction, images[start:stop].to(device), size)
                    out = translators[direction](inputs, index)
                    outputs = out if out.dtype == torch.uint8 else to_uint8(out)
                    key = f"translate/{direction}"
                    stats.parts[key] = stats.parts.get(key, 0.0) + time.perf_counter() - t
                    batch = Batch(index=index, names=list(names), labels=labels, inputs=inputs, outputs=outputs)
                    for ev in evaluators:
                        if ev.direction == direction:
                            t = time.perf_counter()
                            ev.update(batch)
                            stats.parts[ev.name] = stats.parts.get(ev.name, 0.0) + time.perf_counter() - t
                    if writer is not None:
                        pending.append(writer.submit(_save_pngs, save_dir / direction, names, direction,
                                                     outputs.permute(0, 2, 3, 1).cpu().numpy()))
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


# --- writing results ----------------------------------------------------------------------


def confusion_figure(confusion: torch.Tensor, title: str):
    """Row-normalised confusion matrix (rows = ground truth) with class names, as a Figure."""
    from matplotlib.figure import Figure

    h = confusion.double().numpy()
    rows = h.sum(1, keepdims=True)
    norm = np.divide(h, rows, out=np.zeros_like(h), where=rows > 0)
    fig = Figure(figsize=(8.5, 7.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="viridis")
    ticks = range(len(CLASS_NAMES))
    ax.set_xticks(ticks, CLASS_NAMES, rotation=90, fontsize=7)
    ax.set_yticks(ticks, CLASS_NAMES, fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the ground-truth class")
    fig.tight_layout()
    return fig


def per_class_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["train_id", "class", "gt_pixels", "evaluated", "acc", "iou"])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return out.getvalue()


def write_result(
    tracker: RunTracker,
    prefix: str,
    result: Result,
    step: int,
    describe: dict[str, Any],
    declared: tuple[str, ...] | None = None,
) -> None:
    """Replace ``prefix``'s artifacts in the run and record its metrics at ``step``."""
    if declared is not None and set(result.metrics) != set(declared):
        raise CgbenchError(f"evaluator {describe.get('evaluator')!r} returned metrics {sorted(result.metrics)} "
                           f"but declares {sorted(declared)}; fix the evaluator")
    tracker.delete_artifacts(prefix)
    tracker.log_result_metrics({f"{prefix}/{k}": v for k, v in result.metrics.items()}, step)
    record: dict[str, Any] = {**describe, "step": step, "metrics": result.metrics}
    if result.scores is not None:
        rows = per_class_rows(result.scores, result.confusion)
        record["evaluated_classes"] = [CLASS_NAMES[i] for i in result.scores.evaluated_classes]
        record["n_pixels"] = result.scores.n_pixels
        record["per_class"] = rows
        tracker.log_text(per_class_csv(rows), f"{prefix}/per_class.csv")
        name = describe.get("evaluator", prefix)
        tracker.set_tags({f"{TAG_PREFIX}eval.{name}.classes": ",".join(record["evaluated_classes"])})
    if result.confusion is not None:
        record["confusion"] = result.confusion.tolist()
        m = result.metrics
        title = f"{prefix}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items())
        tracker.log_figure(confusion_figure(result.confusion, title), f"{prefix}/confusion.png")
    record.update(result.details)
    tracker.log_json(record, f"{prefix}/scores.json")
    if result.samples:
        tracker.log_image_rows(list(result.samples.values()), f"{prefix}/samples.png")


# --- evaluating a run -----------------------------------------------------------------------


def run_data_root(run, data_value: str, override: str | None = None, image_size: int = 128) -> Path:
    """The dataset folder of a run: ``override`` (``--data``), else the folder the run recorded as
    its dataset input (absolute), else the run's ``data`` config value."""
    from cgbench.data import datasets

    if override:
        return datasets.resolve(override, image_size, generate=False).root
    for dataset_input in run.inputs.dataset_inputs if run.inputs else []:
        try:
            uri = json.loads(dataset_input.dataset.source).get("uri", "")
        except (TypeError, ValueError, AttributeError):
            continue
        if uri and Path(uri).is_dir():
            return Path(uri)
    return datasets.resolve(data_value, image_size, generate=False).root


def load_val_split(root: Path, image_size: int, prep: str = "clean"):
    """The validation split: labels at native resolution, photos and colour label maps X at the
    generator resolution, prepared as training data is (``prep``)."""
    from cgbench.data.layouts import load_split

    split = load_split(root, "val", photo_size=image_size, prep=prep)
    if len(split.labels) == 0:
        raise DataError(f"the validation split of {root} is empty; it needs labelled images to score")
    return split


def evaluate(
    run_id: str,
    metrics: list[str] | tuple[str, ...] | None = None,
    tracking_uri: str | None = None,
    fcn: str | None = None,
    fcn_arch: str | None = None,
    data: str | None = None,
    batch_size: int = 8,
    device: str = "auto",
    save_images: bool = False,
    n_samples: int = 4,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> EvalReport:
    """Score ``run_id`` with the named evaluators and record the results in the run."""
    from cgbench import fcn as fcn_lib
    from cgbench.methods import get_method
    from cgbench.train import resolve_device

    if batch_size < 1:
        raise CgbenchError(f"--batch-size must be >= 1, got {batch_size}")
    classes = select_evaluators(metrics)
    client = client_for(tracking_uri)
    run = get_run(client, run_id)
    tags = run.data.tags
    if tags.get(TAG_PREFIX + "method") == fcn_lib.FCN_METHOD:
        raise CgbenchError(f"run {run_id} is an FCN (evaluator) run; give the id of a run made by `cgbench run`")
    config = recorded_config(client, run_id, "evaluated")
    dev = resolve_device(device)
    state = load_run_checkpoint(client, run_id, map_location=dev)
    if state is None:
        raise CgbenchError(f"run {run_id} has no checkpoint; train it with cgbench run or resume it "
                           f"(cgbench run --resume {run_id})")
    step = int(state.get("iteration", 0))
    root = run_data_root(run, config.data, data, config.image_size)

    segmenter = None
    if any("fcn" in c.needs for c in classes):  # resolved before any work, so a missing FCN fails fast
        segmenter = fcn_lib.load_fcn(
            fcn, client, dev, arch=fcn_arch, digest=tags.get(TAG_PREFIX + "dataset_digest"),
            image_size=config.image_size, data_root=root, echo=echo,
        )
    split = load_val_split(root, config.image_size, config.prep)

    method = get_method(config.method)(config, dev)
    method.load_translators(state["method"]["networks"])
    method.train(False)
    translators: dict[str, Translator] = {
        "labels2photo": lambda x, _: method.labels_to_photo(x),
        "photo2labels": lambda y, _: method.photo_to_labels(y),
    }
    context = EvalContext(split, config.image_size, dev, batch_size, n_samples, run_id,
                          loaders={"fcn": lambda: segmenter})
    evaluators = [c(context) for c in classes]
    echo(f"Evaluating run {run_id} (step {step}) with {', '.join(c.name for c in classes)} on "
         f"{len(split.labels)} val images of {root} ({dev.type}, batch {batch_size}).")

    with tempfile.TemporaryDirectory() as tmpdir:
        save_dir = Path(tmpdir) if save_images else None
        stats = stream(evaluators, context, translators, progress=progress, save_dir=save_dir)
        results = {ev.name: ev.compute() for ev in evaluators}
        tracker = RunTracker(client, run_id)
        for ev in evaluators:
            cls = type(ev)
            describe = {
                "evaluator": cls.name, "direction": cls.direction, "description": cls.description,
                "run_id": run_id, "data_root": str(root), "val_digest": split.digest, "n_images": stats.images,
                "images_per_second": stats.images_per_second,
                "generator_resolution": config.image_size,
                "label_resolution": list(split.labels.shape[-2:]),
            }
            if "fcn" in cls.needs and segmenter is not None:
                describe["fcn"] = {"source": segmenter.source, "run_id": segmenter.run_id,
                                   "image_size": segmenter.image_size, "ground_truth": segmenter.ground_truth}
                tracker.set_tags({f"{TAG_PREFIX}eval.{cls.name}.fcn": segmenter.source})
            write_result(tracker, cls.key_prefix(), results[ev.name], step, describe, declared=cls.metrics)
        if segmenter is not None and segmenter.ground_truth:
            tracker.log_result_metrics(
                {f"{GROUND_TRUTH_PREFIX}/{k}": v for k, v in segmenter.ground_truth.items()}, step)
        if save_dir is not None:
            for direction in sorted({ev.direction for ev in evaluators}):
                tracker.delete_artifacts(f"eval/{direction}/images")
                tracker.client.log_artifacts(run_id, str(save_dir / direction), f"eval/{direction}/images")
    return EvalReport(run_id, step, results, stats, segmenter, str(root),
                      {ev.name: ev.direction for ev in evaluators})


def format_report(report: EvalReport) -> list[str]:
    """The lines ``cgbench eval`` prints: one row per evaluator (plus the FCN's ceiling), then speed."""
    lines = [f"{'evaluator':12s} {'direction':13s} {'per-pixel':>9s} {'per-class':>9s} {'IoU':>7s}"]
    for name, result in report.results.items():
        m = result.metrics
        direction = report.directions.get(name, "")
        if all(k in m for k in ("per_pixel_acc", "per_class_acc", "class_iou")):
            lines.append(f"{name:12s} {direction:13s} {m['per_pixel_acc']:9.3f} {m['per_class_acc']:9.3f} "
                         f"{m['class_iou']:7.3f}")
        else:
            lines.append(f"{name:12s} {direction:13s} " + ", ".join(f"{k}={v:.4g}" for k, v in m.items()))
    gt = report.fcn.ground_truth if report.fcn is not None else {}
    if gt:
        lines.append(f"{'ground truth':12s} {'(FCN ceiling)':13s} {gt.get('per_pixel_acc', math.nan):9.3f} "
                     f"{gt.get('per_class_acc', math.nan):9.3f} {gt.get('class_iou', math.nan):7.3f}")
    s = report.stats
    parts = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(s.parts.items()))
    lines.append(f"{s.images} images in {s.seconds:.2f} s: {s.images_per_second:.1f} images/s ({parts})")
    return lines
