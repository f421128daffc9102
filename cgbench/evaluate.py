"""``cgbench eval``: score a source with the paper's protocol and record the results in a run.

``evaluate(run_id, ["fcn", "seg"])`` rebuilds the run's method from its recorded ``config.json``,
loads only its networks from the newest checkpoint, and scores them through the one scoring
engine (:mod:`cgbench.scoring`), writing the results into the evaluated run at its final
iteration (see :mod:`cgbench.scoring.record` for what a run receives). The run's status is not
touched; re-evaluating replaces the results.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from cgbench.devices import resolve_device
from cgbench.errors import CgbenchError
from cgbench.fcn import load_fcn
from cgbench.protocol import FCN_METHOD, Tags
from cgbench.scoring import Scored, Source, load_val_split, score, select_evaluators
from cgbench.scoring.record import record_scores
from cgbench.scoring.sources import run_source
from cgbench.tracking import RunTracker, client_for, get_run, load_run_checkpoint, recorded_config
from cgbench.plugins import EvalContext, Evaluator, Result, Segmenter


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
    """The dataset folder of a run: ``override`` (``--data``), else the folder the run recorded
    reading (tag ``cgbench.data_root``), else its ``data`` config value. (Not its MLflow dataset
    input: MLflow keeps one dataset record per name and digest, so two folders with the same
    training split share the first one's record.)"""
    from cgbench.data import datasets

    if override:
        return datasets.resolve(override, image_size, generate=False).root
    recorded = run.data.tags.get(Tags.DATA_ROOT)
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    return datasets.resolve(data_value, image_size, generate=False).root


@dataclass
class TrainedRun:
    """A run made by ``cgbench run``, opened for scoring: its record, config, checkpoint step and
    translators (networks from its newest checkpoint, in evaluation mode)."""

    run: Any
    config: Any
    step: int
    source: Source


def open_trained_run(client, run_id: str, device, purpose: str) -> TrainedRun:
    """``run_id``'s translators, refusing runs that translate nothing or have no checkpoint;
    ``purpose`` ("evaluated", "shown in a study") names what cannot be done otherwise."""
    from cgbench.protocol import BENCH_METHOD, EXTERNAL_METHOD, NULL_METHOD, REPORT_METHOD, SWEEP_METHOD

    run = get_run(client, run_id)
    kind = run.data.tags.get(Tags.METHOD)
    if kind in (FCN_METHOD, NULL_METHOD, REPORT_METHOD, SWEEP_METHOD, BENCH_METHOD, EXTERNAL_METHOD):
        raise CgbenchError(f"run {run_id} is not a run made by `cgbench run` ({Tags.METHOD}={kind}); give the id "
                           "of a training run")
    config = recorded_config(client, run_id, purpose)
    state = load_run_checkpoint(client, run_id, map_location=device)
    if state is None:
        raise CgbenchError(f"run {run_id} has no checkpoint; train it with cgbench run or resume it "
                           f"(cgbench run --resume {run_id})")
    return TrainedRun(run, config, int(state.get("iteration", 0)), run_source(config, state, run_id, device))


def check_val_split(run, digest: str, root: Path, allow_other_val: bool) -> dict[str, Any]:
    """The val split at ``root`` is the one the run recorded beside its training data (tag
    ``cgbench.val_digest``; runs from before it are not checked). Another one is refused unless
    ``allow_other_val``; returns what the scores then record about it."""
    recorded = run.data.tags.get(Tags.VAL_DIGEST)
    if recorded is None or recorded == digest:
        return {}
    if not allow_other_val:
        raise CgbenchError(f"the val split at {root} (digest {digest}) is not the one run {run.info.run_id} was "
                           f"trained beside (digest {recorded}); give that dataset with --data DIR, or score this "
                           "one anyway with --data DIR --allow-other-val (recorded with the scores)")
    return {"allow_other_val": True, "recorded_val_digest": recorded}


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
    fcn_strict: bool = False,
    allow_other_val: bool = False,
    options: dict[str, str] | None = None,
) -> EvalReport:
    """Score ``run_id`` with the named evaluators and record the results in the run; the val split
    must be the one the run recorded at training time (see :func:`check_val_split`); ``options``:
    evaluator settings (``--set key=value``, see :func:`cgbench.scoring.evaluator_options`)."""
    if batch_size < 1:
        raise CgbenchError(f"--batch-size must be >= 1, got {batch_size}")
    if allow_other_val and not data:
        raise CgbenchError("--allow-other-val scores another val split than the run's own: give it with --data DIR")
    classes = select_evaluators(metrics, options)
    client = client_for(tracking_uri)
    dev = resolve_device(device)
    trained = open_trained_run(client, run_id, dev, "evaluated")
    run, config, step, tags = trained.run, trained.config, trained.step, trained.run.data.tags
    root = run_data_root(run, config.data, data, config.image_size)
    split = load_val_split(root, config.image_size, config.prep)
    other_val = check_val_split(run, split.digest, root, allow_other_val)
    segmenter = None
    if needs_fcn(classes):  # resolved before any work, so a missing FCN fails fast
        segmenter = load_fcn(fcn, client, dev, arch=fcn_arch, digest=tags.get(Tags.DATASET_DIGEST),
                             image_size=config.image_size, data_root=root, echo=echo, strict=fcn_strict,
                             prep=config.prep)
    source = trained.source
    context = EvalContext(split, config.image_size, dev, batch_size, n_samples, run_id,
                          loaders={"fcn": lambda: segmenter}, options=options)
    echo(f"Evaluating run {run_id} (step {step}) with {', '.join(c.name for c in classes)} on "
         f"{len(split.labels)} val images of {root} ({dev.type}, batch {batch_size}).")
    describe = {"run_id": run_id, "data_root": str(root), "val_digest": split.digest,
                "label_resolution": list(split.labels.shape[-2:]), **other_val}
    tracker = RunTracker(client, run_id)
    tracker.set_tags({Tags.EVAL_VAL_DIGEST: split.digest,
                      Tags.EVAL_ALLOW_OTHER_VAL: str(bool(other_val)).lower()})
    scored = score_into_run(tracker, source, classes, context, step, describe, segmenter,
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




# --- sources made outside cgbench: folders of images, the authors' checkpoints ----------------------


@dataclass
class ExternalRequest:
    """What ``cgbench eval --images`` / ``--checkpoint`` score, and where the result goes."""

    direction: str
    data: str | None = None  # dataset folder or "synthcity" (default)
    name: str | None = None  # the table row (default: the folder's or file's name)
    experiment: str = "cgbench"
    metrics: list[str] | tuple[str, ...] | None = None
    image_size: int | None = None
    fcn: str | None = None
    fcn_arch: str | None = None
    batch_size: int = 8
    device: str = "auto"
    n_samples: int = 4
    allow_partial: bool = False
    tracking_uri: str | None = None
    progress: bool = True
    fcn_strict: bool = False
    options: dict[str, str] = field(default_factory=dict)  # evaluator settings (--set key=value)


DEFAULT_BY_DIRECTION = {"labels2photo": ("fcn",), "photo2labels": ("seg",)}


def _external_evaluators(req: ExternalRequest) -> list[type[Evaluator]]:
    from cgbench.protocol import DIRECTIONS

    if req.direction not in DIRECTIONS:
        raise CgbenchError(f"--direction must be one of {', '.join(DIRECTIONS)}, not {req.direction!r}")
    classes = select_evaluators(req.metrics or DEFAULT_BY_DIRECTION[req.direction], req.options)
    wrong = [c.name for c in classes if c.direction != req.direction]
    if wrong:
        raise CgbenchError(f"evaluator {wrong[0]!r} scores another direction than {req.direction}; drop it "
                           "(see cgbench eval --list)")
    return classes


def evaluate_images(folder: str | Path, req: ExternalRequest, echo: Callable[[str], None] = print) -> EvalReport:
    """Score a folder of generated images (:mod:`cgbench.scoring.external`) and record the result
    as a new run (``cgbench.method=external``, ``cgbench.source=images``)."""
    import dataclasses as dc

    from cgbench.scoring.external import candidate_images, check_matched, folder_source, image_size_of, match_images

    from cgbench.data import datasets
    from cgbench.data.layouts import photo_names

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CgbenchError(f"--images {folder} is not a folder; give the folder of generated images")
    classes = _external_evaluators(req)
    images = candidate_images(folder, req.direction)
    if not images:
        raise CgbenchError(f"no PNG or JPEG images in {folder}; give the folder the generated images are in")
    size = req.image_size or image_size_of(images)
    if size is None:
        raise CgbenchError(f"the images in {folder} are not squares, so the generator's resolution cannot be read "
                           "from them; give it with --image-size S")
    ref = datasets.resolve(req.data or "synthcity", size, echo=echo)
    names = photo_names(ref.root, "val")
    matched = match_images(folder, names, req.direction)
    check_matched(matched, folder, len(names), req.allow_partial)
    split = load_val_split(ref.root, size)
    frames = sorted(matched.files)
    if len(frames) < len(names):
        split = dc.replace(split, labels=split.labels[frames], photos=split.photos[frames],
                           names=[split.names[i] for i in frames])
    files = {new: matched.files[old] for new, old in enumerate(frames)}
    source = folder_source(folder, req.direction, files, size, req.name or folder.name)
    source.details["coverage"] = matched.coverage(len(names))
    return _score_external(source, classes, split, ref, req, echo)


def evaluate_checkpoint(path: str | Path, arch: str, norm: str, req: ExternalRequest,
                        echo: Callable[[str], None] = print) -> EvalReport:
    """Score a generator checkpoint of the authors' code and record the result as a new run
    (``cgbench.method=external``, ``cgbench.source=checkpoint``)."""
    from cgbench.data import datasets
    from cgbench.scoring.external import checkpoint_source

    path = Path(path).expanduser()
    if not path.is_file():
        raise CgbenchError(f"--checkpoint {path} does not exist; give a *_net_G_A.pth or *_net_G_B.pth file")
    classes = _external_evaluators(req)
    size = req.image_size or 128
    source = checkpoint_source(path, arch, norm, req.direction, size, resolve_device(req.device),
                               req.name or path.stem)
    ref = datasets.resolve(req.data or "synthcity", size, echo=echo)
    return _score_external(source, classes, load_val_split(ref.root, size), ref, req, echo)


def _score_external(source: Source, classes, split, ref, req: ExternalRequest, echo) -> EvalReport:
    from cgbench.data.layouts import load_split
    from cgbench.protocol import EXTERNAL_METHOD
    from cgbench.tracking import start_run

    client = client_for(req.tracking_uri)
    dev = resolve_device(req.device)
    digest = load_split(ref.root, "train", size=8).digest  # the data's identity, as trained runs record it
    segmenter = (load_fcn(req.fcn, client, dev, arch=req.fcn_arch, digest=digest, image_size=source.image_size,
                          data_root=ref.root, echo=echo, strict=req.fcn_strict) if needs_fcn(classes) else None)
    tags = {Tags.METHOD: EXTERNAL_METHOD, Tags.SOURCE: source.kind, Tags.ROW: source.name,
            Tags.DATASET: ref.name, Tags.DATASET_DIGEST: digest,
            Tags.IMAGE_SIZE: str(source.image_size), Tags.DIRECTION: req.direction,
            **{Tags.named(k): str(v) for k, v in source.details.items()}}
    params = {"direction": req.direction, "image_size": source.image_size, "data": str(ref.root),
              "evaluators": ",".join(c.name for c in classes), **source.details}
    root = str(ref.root.resolve())
    tracker = start_run(req.tracking_uri, req.experiment, source.name, tags, params, params,
                        datasets=[(ref.name + "-val", root, split.digest, "evaluation")])
    context = EvalContext(split, source.image_size, dev, req.batch_size, req.n_samples, tracker.run_id,
                          loaders={"fcn": lambda: segmenter}, options=req.options)
    echo(f"Scoring {source.kind} {source.name!r} ({req.direction}, {len(split.labels)} val frames of {ref.root}, "
         f"{source.image_size} px) as run {tracker.run_id} in experiment {req.experiment!r}.")
    describe = {"run_id": tracker.run_id, "data_root": root, "val_digest": split.digest,
                "label_resolution": list(split.labels.shape[-2:])}
    with tracker.ending():
        scored = score_into_run(tracker, source, classes, context, 0, describe, segmenter, progress=req.progress)
    return EvalReport(tracker.run_id, 0, scored.results, scored.stats, segmenter, root,
                      {c.name: c.direction for c in classes})
