"""Writing scores into an MLflow run (through :class:`cgbench.tracking.RunTracker`).

For each evaluator, in the run:

* metrics ``<prefix>/<metric>`` (built-ins: ``eval/labels2photo/...``, ``eval/photo2labels/...``)
  at the given step;
* artifacts in its artifact folder (``<prefix>/`` unless it names another, as the distance
  evaluators do: ``eval/fid/``, ...): ``scores.json`` (metrics, per-class values, evaluated class
  names, what was scored and how), ``per_class.csv``, ``confusion.png``, ``samples.png``; when the
  images were saved, the translated images as lossless PNGs under ``eval/<direction>/images``;
* with the FCN score, the FCN's own "ground truth" scores as ``eval/ground_truth/...`` beside them.

Re-scoring replaces: the evaluator's artifact folder is deleted and re-written (so no evaluator's
folder may lie inside another's), and metrics go through :meth:`RunTracker.log_result_metrics` (an
identical value is not duplicated in the metric history; a changed value becomes the displayed
one). The run's status is not touched.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgbench.data.labels import CLASS_NAMES
from cgbench.errors import CgbenchError
from cgbench.protocol import GROUND_TRUTH_PREFIX, Tags, metric_prefix
from cgbench.scoring.engine import Scored
from cgbench.tracking import RunTracker
from cgbench.plugins import Result, Segmenter, per_class_rows


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
    artifact_dir: str | None = None,
) -> None:
    """Record ``result``'s metrics as ``<prefix>/<metric>`` at ``step`` and replace its files in
    ``artifact_dir`` (default: ``prefix``)."""
    if declared is not None and set(result.metrics) != set(declared):
        raise CgbenchError(f"evaluator {describe.get('evaluator')!r} returned metrics {sorted(result.metrics)} "
                           f"but declares {sorted(declared)}; fix the evaluator")
    folder = artifact_dir or prefix
    tracker.delete_artifacts(folder)
    tracker.log_result_metrics({f"{prefix}/{k}": v for k, v in result.metrics.items()}, step)
    record: dict[str, Any] = {**describe, "step": step, "metrics": result.metrics}
    if result.scores is not None:
        rows = per_class_rows(result.scores, result.confusion)
        record["evaluated_classes"] = [CLASS_NAMES[i] for i in result.scores.evaluated_classes]
        record["n_pixels"] = result.scores.n_pixels
        record["per_class"] = rows
        tracker.log_text(per_class_csv(rows), f"{folder}/per_class.csv")
        name = describe.get("evaluator", prefix)
        tracker.set_tags({Tags.eval_classes(name): ",".join(record["evaluated_classes"])})
    if result.confusion is not None:
        record["confusion"] = result.confusion.tolist()
        title = f"{prefix}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
        tracker.log_figure(confusion_figure(result.confusion, title), f"{folder}/confusion.png")
    record.update(result.details)
    tracker.log_json(record, f"{folder}/scores.json")
    if result.samples:
        tracker.log_image_rows(list(result.samples.values()), f"{folder}/samples.png")


def record_scores(
    tracker: RunTracker,
    scored: Scored,
    step: int,
    describe: dict[str, Any],
    segmenter: Segmenter | None = None,
    images_dir: Path | None = None,
) -> None:
    """Every evaluator's result of ``scored`` into the run, with what was scored (``describe``,
    the source's details), the FCN used and its ceiling, and the saved images if any."""
    stats = scored.stats
    for cls in scored.evaluators:
        record = {
            "evaluator": cls.name, "direction": cls.direction, "description": cls.description,
            "source": {"name": scored.source.name, "kind": scored.source.kind, **scored.source.details},
            **describe, "n_images": stats.images, "images_per_second": stats.images_per_second,
            "generator_resolution": scored.source.image_size,
        }
        if "fcn" in cls.needs and segmenter is not None:
            record["fcn"] = {"source": segmenter.source, "run_id": segmenter.run_id,
                             "image_size": segmenter.image_size, "ground_truth": segmenter.ground_truth}
            tracker.set_tags({Tags.eval_fcn(cls.name): segmenter.source})
        write_result(tracker, cls.key_prefix(), scored.results[cls.name], step, record, declared=cls.metrics,
                     artifact_dir=cls.artifact_folder())
    if segmenter is not None and segmenter.ground_truth and any("fcn" in c.needs for c in scored.evaluators):
        tracker.log_result_metrics({f"{GROUND_TRUTH_PREFIX}/{k}": v for k, v in segmenter.ground_truth.items()}, step)
    if images_dir is not None:
        for direction in sorted({c.direction for c in scored.evaluators}):
            tracker.replace_folder(images_dir / direction, f"{metric_prefix(direction)}/images")
