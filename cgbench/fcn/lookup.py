"""Finding and loading the evaluator FCN.

Evaluation loads an FCN by run id or file (``weights_only=True``), or finds the latest finished FCN
run trained on the same data (same digest) at the same image size.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable

import torch

from cgbench.errors import CgbenchError
from cgbench.fcn.checkpoint import segmenter_from_checkpoint
from cgbench.protocol import FCN_METHOD, GROUND_TRUTH_PREFIX, SCORE_METRICS, Tags
from cgbench.tracking import get_run, load_run_checkpoint, search_runs
from cgbench.plugins import Segmenter


def find_fcn_run(client, digest: str | None, image_size: int, prep: str | None = None):
    """The latest finished FCN run trained on data with ``digest`` at ``image_size`` (and, when
    given, with data preparation ``prep``) that has a checkpoint, across all experiments; None
    when there is none."""
    if not digest:
        return None
    runs = search_runs(
        client, None,
        f"tags.`{Tags.METHOD}` = '{FCN_METHOD}' and tags.`{Tags.DATASET_DIGEST}` = '{digest}' "
        f"and tags.`{Tags.IMAGE_SIZE}` = '{image_size}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=50,
    )
    for run in runs:
        if prep is not None and run.data.tags.get(Tags.PREP, "clean") != prep:
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
            data = shlex.quote(str(data_root)) if data_root else "DIR"
            raise CgbenchError(
                f"no finished FCN trained on this dataset (digest {digest}) at image size {image_size} in {uri}; "
                f"train one with: cgbench fcn train --data {data} --set image_size={image_size} --tracking-uri "
                f"{shlex.quote(uri)} "
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
    if run.data.tags.get(Tags.METHOD) != FCN_METHOD:
        raise CgbenchError(f"run {spec} is not an FCN run ({Tags.METHOD}={run.data.tags.get(Tags.METHOD)}); "
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
