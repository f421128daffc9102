"""``cgbench eval``: score a source with the paper's protocol and record the results in a run.

``evaluate(run_id, ["fcn", "seg"])`` rebuilds the run's method from its recorded ``config.json``,
loads only its networks from the newest checkpoint, and scores them through the one scoring
engine (:mod:`cgbench.scoring`), writing the results into the evaluated run at its final
iteration (see :mod:`cgbench.scoring.record` for what a run receives). The run's status is not
touched; re-evaluating replaces the results.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from cgbench.devices import resolve_device
from cgbench.errors import CgbenchError
from cgbench.fcn import load_fcn
from cgbench.protocol import FCN_METHOD, TAG_PREFIX
from cgbench.scoring import Scored, Source, load_val_split, score, select_evaluators
from cgbench.scoring.record import record_scores
from cgbench.scoring.sources import run_source
from cgbench.tracking import RunTracker, client_for, get_run, load_run_checkpoint, recorded_config
from evaluators.base import EvalContext, Evaluator, Result, Segmenter


@dataclass
class EvalReport:
    run_id: str
    step: int
    results: dict[str, Result]
    stats: Any  # cgbench.scoring.StreamStats
    fcn: Segmenter | None = None
    data_root: str = ""
    directions: dict[str, str] = field(default_factory=dict)  # evaluator name -> direction


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


def needs_fcn(classes: list[type[Evaluator]]) -> bool:
    return any("fcn" in c.needs for c in classes)


def score_into_run(
    tracker: RunTracker,
    source: Source,
    classes: list[type[Evaluator]],
    context: EvalContext,
    step: int,
    describe: dict[str, Any],
    segmenter: Segmenter | None,
    save_images: bool = False,
    progress: bool = True,
) -> Scored:
    """Score ``source`` with ``classes`` on ``context``'s split and record everything in the run."""
    with tempfile.TemporaryDirectory() as tmpdir:
        save_dir = Path(tmpdir) if save_images else None
        scored = score(source, classes, context, progress=progress, save_dir=save_dir)
        record_scores(tracker, scored, step, describe, segmenter, save_dir)
    return scored


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
    if batch_size < 1:
        raise CgbenchError(f"--batch-size must be >= 1, got {batch_size}")
    classes = select_evaluators(metrics)
    client = client_for(tracking_uri)
    run = get_run(client, run_id)
    tags = run.data.tags
    if tags.get(TAG_PREFIX + "method") == FCN_METHOD:
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
    if needs_fcn(classes):  # resolved before any work, so a missing FCN fails fast
        segmenter = load_fcn(fcn, client, dev, arch=fcn_arch, digest=tags.get(TAG_PREFIX + "dataset_digest"),
                             image_size=config.image_size, data_root=root, echo=echo)
    split = load_val_split(root, config.image_size)
    source = run_source(config, state, run_id, dev)
    context = EvalContext(split, config.image_size, dev, batch_size, n_samples, run_id,
                          loaders={"fcn": lambda: segmenter})
    echo(f"Evaluating run {run_id} (step {step}) with {', '.join(c.name for c in classes)} on "
         f"{len(split.labels)} val images of {root} ({dev.type}, batch {batch_size}).")
    describe = {"run_id": run_id, "data_root": str(root), "val_digest": split.digest,
                "label_resolution": list(split.labels.shape[-2:])}
    scored = score_into_run(RunTracker(client, run_id), source, classes, context, step, describe, segmenter,
                            save_images, progress)
    return EvalReport(run_id, step, scored.results, scored.stats, segmenter, str(root),
                      {c.name: c.direction for c in classes})


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


