"""The evaluator network behind the FCN score: training it, finding it, loading it.

``train_fcn`` trains a segmenter (``fcn_arch``: the CPU-sized FCN-8s of
:mod:`cgbench.models.segmenter`, or torchvision's ``fcn_resnet50``, never pretrained) on the
real training photos and their ground truth the way the paper's FCN was trained: each photo is
downsampled to the generator's resolution (``image_size``, bilinear with antialiasing, as the
loader resizes training photos) and upsampled back bilinearly to the label resolution
(:func:`evaluators.fcn.segmenter_input`); the loss is cross-entropy against the native-resolution
labels with ignored pixels (255) left out. The run is tracked in MLflow like any run (tags
``cgbench.method=fcn``, ``cgbench.dataset_digest`` = the training split's digest, the same one
``cgbench run`` records, ``cgbench.image_size``), logs ``loss/fcn`` per step, and ends with its
own score on the real validation photos degraded the same way — the tables' "ground truth" row,
the ceiling of the FCN score — under ``eval/ground_truth/...``.

Evaluation loads an FCN by run id or file (``weights_only=True``), or finds the latest finished FCN
run trained on the same data (same digest) at the same image size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cgbench.config import Config
from cgbench.data.labels import IGNORE_INDEX, NUM_CLASSES
from cgbench.devices import resolve_device
from cgbench.errors import CgbenchError, ConfigError, DataError
from cgbench.models.segmenter import SEGMENTER_ARCHS, build_segmenter
from cgbench.protocol import FCN_METHOD, GROUND_TRUTH_PREFIX, LADDER_PREFIX, SCORE_METRICS, TAG_PREFIX, segmenter_input
from cgbench.scoring import evaluator, score
from cgbench.scoring.record import write_result
from cgbench.scoring.sources import real_photos
from cgbench.tracking import RunTracker, get_run, load_run_checkpoint, search_runs, start_run
from evaluators.base import EvalContext, Result, Segmenter

CHECKPOINT_FORMAT = 1


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


# --- checkpoints and lookup ------------------------------------------------------------------


def checkpoint_state(model: nn.Module, config: Config, iteration: int, ground_truth: dict[str, float]) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "segmenter": model.state_dict(),
        "arch": config.fcn_arch,
        "width": config.fcn_width,
        "num_classes": NUM_CLASSES,
        "image_size": config.image_size,
        "iteration": iteration,
        "ground_truth": dict(ground_truth),
    }


def _infer_bare(state: dict[str, torch.Tensor], arch: str) -> tuple[dict[str, torch.Tensor], int, int]:
    """(state dict keyed for build_segmenter(arch), width, num_classes) of a bare state dict."""
    if arch == "fcn8s":
        try:
            width, classes = state["to_pool3.0.0.weight"].shape[0], state["score_fr.weight"].shape[0]
        except KeyError:
            raise CgbenchError("these weights are not an fcn8s state dict (no to_pool3/score_fr weights); "
                               "pass the right --fcn-arch") from None
        return state, int(width), int(classes)
    if not any(k.startswith("model.") for k in state):  # torchvision's own keys
        state = {f"model.{k}": v for k, v in state.items()}
    if "model.classifier.4.weight" not in state:
        raise CgbenchError("these weights are not an fcn_resnet50 state dict (no classifier.4 weights); "
                           "pass the right --fcn-arch")
    state = {k: v for k, v in state.items() if not k.startswith("model.aux_classifier.")}
    return state, 32, int(state["model.classifier.4.weight"].shape[0])


def segmenter_from_checkpoint(obj: Any, source: str, arch: str | None, device: torch.device) -> tuple[nn.Module, dict]:
    """Build and load the segmenter from our checkpoint dict or a bare state dict."""
    if not isinstance(obj, dict):
        raise CgbenchError(f"{source} holds a {type(obj).__name__}, not a state dict or a cgbench FCN checkpoint")
    if "segmenter" in obj:
        meta = {k: obj.get(k) for k in ("arch", "width", "num_classes", "image_size", "ground_truth", "iteration")}
        state, arch_, width, classes = obj["segmenter"], obj["arch"], int(obj["width"]), int(obj["num_classes"])
        if arch and arch != arch_:
            raise CgbenchError(f"{source} is an {arch_} checkpoint, but --fcn-arch {arch} was given; drop --fcn-arch")
    else:
        arch_ = arch or "fcn8s"
        if arch_ not in SEGMENTER_ARCHS:
            raise CgbenchError(f"unknown --fcn-arch {arch_!r}; choose one of: {', '.join(SEGMENTER_ARCHS)}")
        state, width, classes = _infer_bare(obj, arch_)
        meta = {"arch": arch_, "width": width, "num_classes": classes}
    if classes != NUM_CLASSES:
        raise CgbenchError(f"the segmenter in {source} has {classes} output classes; the FCN score needs exactly the "
                           f"{NUM_CLASSES} Cityscapes train classes (an extra channel would leak into the histogram)")
    model = build_segmenter(arch_, NUM_CLASSES, width)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CgbenchError(f"the weights in {source} do not fit a {arch_} segmenter ({first}); "
                           "pass the right --fcn-arch") from None
    return model.to(device).eval(), meta


def find_fcn_run(client, digest: str | None, image_size: int, prep: str | None = None):
    """The latest finished FCN run trained on data with ``digest`` at ``image_size`` (and, when
    given, with data preparation ``prep``) that has a checkpoint, across all experiments; None
    when there is none."""
    if not digest:
        return None
    runs = search_runs(
        client, None,
        f"tags.`{TAG_PREFIX}method` = '{FCN_METHOD}' and tags.`{TAG_PREFIX}dataset_digest` = '{digest}' "
        f"and tags.`{TAG_PREFIX}image_size` = '{image_size}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=50,
    )
    for run in runs:
        if prep is not None and run.data.tags.get(TAG_PREFIX + "prep", "clean") != prep:
            continue
        if any(f.path.endswith(".pt") for f in client.list_artifacts(run.info.run_id, "checkpoints")):
            return run
    return None


def _ground_truth_of(run) -> dict[str, float]:
    metrics = run.data.metrics
    return {k: metrics[f"{GROUND_TRUTH_PREFIX}/{k}"] for k in SCORE_METRICS if f"{GROUND_TRUTH_PREFIX}/{k}" in metrics}


def _load_from_run(client, run, device: torch.device, arch: str | None) -> Segmenter:
    run_id = run.info.run_id
    state = load_run_checkpoint(client, run_id, map_location=device)
    if state is None:
        raise CgbenchError(f"FCN run {run_id} has no checkpoint; train one with cgbench fcn train")
    model, meta = segmenter_from_checkpoint(state, f"FCN run {run_id}", arch, device)
    return Segmenter(model, source=f"run {run_id}", run_id=run_id, image_size=meta.get("image_size"),
                     ground_truth=_ground_truth_of(run) or dict(meta.get("ground_truth") or {}))


def load_fcn(
    spec: str | None,
    client,
    device: torch.device,
    arch: str | None = None,
    digest: str | None = None,
    image_size: int | None = None,
    data_root: Path | str | None = None,
    echo: Callable[[str], None] = print,
    strict: bool = False,
    prep: str | None = None,
) -> Segmenter:
    """The evaluator segmenter: ``spec`` = a .pt file (our checkpoint or a bare state dict), an FCN
    run id, ``caffe:PATH`` or a ``.caffemodel`` file (the published FCN-8s, scored the public
    script's way; ``strict``: its 20th output counted as a miss), or None to use the latest
    finished FCN run on the same data and image size."""
    if spec is not None and (spec.startswith("caffe:") or spec.endswith(".caffemodel")):
        return _load_published(spec.removeprefix("caffe:"), device, strict, echo)
    if spec is None:
        run = find_fcn_run(client, digest, image_size, prep)
        if run is None:
            uri = client.tracking_uri
            data = f"--data {data_root}" if data_root else "--data DIR"
            raise CgbenchError(
                f"no finished FCN trained on this dataset (digest {digest}) at image size {image_size} in {uri}; "
                f"train one with: cgbench fcn train {data} --set image_size={image_size} --tracking-uri {uri} "
                "(or name one with --fcn RUN_ID|PATH)"
            )
        segmenter = _load_from_run(client, run, device, arch)
        echo(f"Using the latest FCN trained on this data: run {run.info.run_id} "
             f"({run.data.tags.get('mlflow.runName', '')}, experiment {run.info.experiment_id}).")
        return segmenter
    path = Path(spec).expanduser()
    if path.is_file():
        try:
            obj = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:
            raise CgbenchError(f"cannot load {path} with weights_only=True ({type(exc).__name__}); give a state dict "
                               "or a checkpoint of cgbench fcn train") from None
        model, meta = segmenter_from_checkpoint(obj, str(path), arch, device)
        if meta.get("image_size") and image_size and meta["image_size"] != image_size:
            echo(f"warning: the FCN in {path} was trained at image size {meta['image_size']}, "
                 f"the run at {image_size}; scores are not comparable to the protocol's")
        return Segmenter(model, source=str(path), image_size=meta.get("image_size"),
                         ground_truth=dict(meta.get("ground_truth") or {}))
    if any(sep in spec for sep in ("/", "\\")) or spec.endswith(".pt"):
        raise CgbenchError(f"FCN file {spec!r} does not exist; give a .pt file or an FCN run id")
    run = get_run(client, spec)
    if run.data.tags.get(TAG_PREFIX + "method") != FCN_METHOD:
        raise CgbenchError(f"run {spec} is not an FCN run (cgbench.method={run.data.tags.get(TAG_PREFIX + 'method')}); "
                           "give a run made by cgbench fcn train")
    segmenter = _load_from_run(client, run, device, arch)
    if segmenter.image_size and image_size and segmenter.image_size != image_size:
        echo(f"warning: FCN run {spec} was trained at image size {segmenter.image_size}, the run at {image_size}")
    return segmenter


def _load_published(path: str, device: torch.device, strict: bool, echo: Callable[[str], None]) -> Segmenter:
    from cgbench.models.caffemodel import load_published_fcn

    file = Path(path).expanduser()
    if not file.is_file():
        raise CgbenchError(f"the published FCN {file} does not exist; give the path of fcn-8s-cityscapes.caffemodel")
    echo(f"Using the published FCN-8s from {file}, scored the public script's way"
         + (" (strict: its 20th output counts as a miss)." if strict else "."))
    return Segmenter(load_published_fcn(file, device).eval(), source=f"caffe:{file}", published=True, strict=strict)


# --- training ---------------------------------------------------------------------------------


@dataclass
class FCNTrainResult:
    run_id: str
    iterations: int
    seconds: float
    ground_truth: Result


def ground_truth_scores(model: nn.Module, split, image_size: int, device: torch.device, batch_size: int,
                        progress: bool = False, n_samples: int = 4) -> tuple[Result, Any]:
    """The FCN score of the real validation photos (at the generator resolution, upsampled to the
    label resolution): the ceiling of the FCN score, the tables' "ground truth" row."""
    segmenter = Segmenter(model.eval(), source="training")
    context = EvalContext(split, image_size, device, batch_size, n_samples, loaders={"fcn": lambda: segmenter})
    scored = score(real_photos(split, image_size), [evaluator("fcn")], context, progress=progress,
                   desc="ground truth")
    return scored.results["fcn"], scored.stats


def degradation_ladder(model: nn.Module, split, image_size: int, device: torch.device,
                       batch_size: int) -> dict[str, dict[str, float]]:
    """The FCN score of the real val photos under each rung of :data:`cgbench.scoring.ladder.LADDER`."""
    from cgbench.scoring.ladder import LADDER, rung_source

    segmenter = Segmenter(model.eval(), source="training")
    context = EvalContext(split, image_size, device, batch_size, 0, loaders={"fcn": lambda: segmenter})
    fcn = [evaluator("fcn")]
    return {source.name: score(source, fcn, context, progress=False).results["fcn"].metrics
            for damage, levels in LADDER.items() for level in levels
            if (source := rung_source(split, image_size, damage, level))}


def record_ladder(tracker: RunTracker, clean: dict[str, float], rungs: dict[str, dict[str, float]], step: int,
                  echo: Callable[[str], None]) -> bool:
    """The ladder as metrics ``eval/ladder/<rung>/<metric>``, a plot and a JSON artifact, and the
    tag ``cgbench.fcn.ladder_falls``; a ladder that does not fall is reported. Returns whether all fall."""
    from cgbench.scoring.ladder import LADDER, falls, ladder_figure, rung_name

    tracker.log_result_metrics({f"{LADDER_PREFIX}/{rung}/{k}": v for rung, m in rungs.items() for k, v in m.items()},
                               step)
    flat = []
    for damage, levels in LADDER.items():
        for metric in SCORE_METRICS:
            if not falls([clean[metric]] + [rungs[rung_name(damage, level)][metric] for level in levels]):
                flat.append(f"{damage} ({metric})")
    tracker.set_tags({TAG_PREFIX + "fcn.ladder_falls": str(not flat).lower(),
                      TAG_PREFIX + "fcn.ladder_flat": ", ".join(flat)})
    tracker.log_json({"clean": clean, "rungs": rungs, "does_not_fall": flat}, f"{LADDER_PREFIX}/ladder.json")
    tracker.log_figure(ladder_figure(clean, rungs, SCORE_METRICS), f"{LADDER_PREFIX}/ladder.png")
    if flat:
        echo(f"error in the FCN: its score does not fall along the degradation ladder for {', '.join(flat)}; it "
             "cannot tell damaged photos from clean ones there (train it longer, e.g. --epochs, or check the data)")
    return not flat


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
        TAG_PREFIX + "method": FCN_METHOD,
        TAG_PREFIX + "fcn_arch": config.fcn_arch,
        TAG_PREFIX + "dataset": ref.name,
        TAG_PREFIX + "dataset_digest": train_split.digest,
        TAG_PREFIX + "dataset_layout": train_split.layout,
        TAG_PREFIX + "image_size": str(size),
        TAG_PREFIX + "prep": config.prep,
        TAG_PREFIX + "preset": preset or "",
        TAG_PREFIX + "seed": str(config.seed),
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
