"""A training run from request to status: the checks, the setup, the run opened (new, a sweep's
child, or resumed from its newest checkpoint), the loop, and the status the run ends with.

When the environment describes a process group (torchrun, or ``cgbench run --nproc``), this
process joins it and trains as its rank; only rank 0 writes to MLflow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from cgbench import distributed
from cgbench.config import Config, validate
from cgbench.data import datasets
from cgbench.data.layouts import Split, split_digest
from cgbench.errors import ConfigError, DataError
from cgbench.methods import get_method
from cgbench.protocol import Tags
from cgbench.tracking import RunTracker, client_for, get_run, recorded_config, start_run
from cgbench.training.loop import Loop, StopRequest, TrainResult
from cgbench.training.setup import Setup, TrainingData, prepare
from cgbench.training.state import load_training_state


@dataclass(frozen=True)
class TrainRequest:
    """What :func:`train` is asked to do: train ``config`` as a new run, or continue
    ``resume_run_id`` with its recorded config."""

    config: Config | None
    tracking_uri: str | None = None
    experiment: str = "cgbench"
    preset: str | None = None
    resume_run_id: str | None = None
    parent_run_id: str | None = None  # a sweep's parent run: the new run is its child
    run_name: str | None = None
    tags: dict[str, str] | None = None
    progress: bool = True
    echo: Callable[[str], None] = print
    on_progress: Callable[[int, int], None] | None = None  # (iteration, total) every log_every iterations
    device: str | None = None  # replaces the config's device (sweeps place their children on GPUs)
    data: str | None = None  # resuming: the run's dataset, moved (checked to hold the same data)


def train(config: Config | None, **request: Any) -> TrainResult:
    """Train ``config`` (or continue ``resume_run_id``) and record it in MLflow; the keywords are
    the fields of :class:`TrainRequest`.

    When the environment describes a process group (torchrun, or ``cgbench run --nproc``), this
    process joins it and trains as its rank."""
    req = TrainRequest(config, **request)
    resumed_run = None
    if req.resume_run_id:
        client = client_for(req.tracking_uri)
        resumed_run = get_run(client, req.resume_run_id)
        check_training_run(resumed_run)
        check_resume_world_size(resumed_run, distributed.requested_world_size())
        config = recorded_config(client, req.resume_run_id, "resumed")
        config = config.replace(data=resumed_data(resumed_run, config, req.data))
    if req.device is not None:
        config = config.replace(device=req.device)
    validate(config)
    check_method(config.method, distributed.env_describes_group())  # unknown method: fail before touching data
    with distributed.process_group(config.device) as ctx:
        return _train(req, config, ctx, resumed_run)


def check_method(name: str, in_group: bool) -> None:
    """The method exists and, when it is to train in a process group, can train under
    DistributedDataParallel."""
    cls = get_method(name)
    if in_group and not cls.supports_ddp:
        raise ConfigError(f"method {name!r} cannot train under DistributedDataParallel; drop --nproc")


def check_training_run(run) -> None:
    """Only a run made by ``cgbench run`` resumes (an FCN, null, sweep or report run has no
    training state); checked before the run is touched."""
    from cgbench.methods import METHODS

    method = run.data.tags.get(Tags.METHOD)
    if method not in METHODS:
        raise ConfigError(f"run {run.info.run_id} is not a training run ({Tags.METHOD}={method!r}); --resume "
                          "continues runs made by `cgbench run`")


def trained_world_size(run) -> int:
    """How many processes a run was trained on (runs from before the tag: 1)."""
    return int(run.data.tags.get(Tags.WORLD_SIZE, "1"))


def check_resume_world_size(run, world_size: int) -> None:
    """A run resumes on as many processes as it was trained on: the batches, the image pools and
    the checkpoint's per-rank state all depend on it."""
    trained = trained_world_size(run)
    if trained != world_size:
        raise ConfigError(
            f"run {run.info.run_id} was trained on {trained} process{'es' if trained > 1 else ''} and cannot "
            f"resume on {world_size}; resume it with --nproc {trained}"
        )


def _train(req: TrainRequest, config: Config, ctx: distributed.Context, resumed_run) -> TrainResult:
    """The body of :func:`train`, as rank ``ctx.rank`` of ``ctx.world_size``. From the moment the
    run is opened until its status is set, Ctrl-C and SIGTERM are stop requests (:class:`StopRequest`)."""
    if not ctx.is_main:
        req = dataclasses.replace(req, echo=_silent, progress=False, on_progress=None)
    setup = prepare(config, ctx, req.echo)
    with StopRequest() as stop:
        tracker, start, last_logged = open_run(req, config, ctx, setup, resumed_run)
        with tracker.ending():
            if start >= setup.total:  # resumed after its last iteration: only its status was left to set
                return TrainResult(tracker.run_id, start, "FINISHED", math.nan, 0.0, 0.0, 0.0)
            loop = Loop(config, ctx, setup, tracker, last_logged)
            loop.run(start, stop, req.progress, req.on_progress)
            loop.log_samples(setup.total)
    return loop.result()


def open_run(req: TrainRequest, config: Config, ctx: distributed.Context, setup: Setup, resumed_run):
    """The run this process writes to — new (also a sweep's child) or resumed from its newest
    checkpoint — as ``(tracker, first iteration, last iteration MLflow already holds)``. Only rank
    0 writes: the other ranks get a :class:`_NoTracker` with the run's id."""
    if resumed_run is not None:
        return _resume_run(req, ctx, setup, resumed_run)
    if not ctx.is_main:
        return _NoTracker(distributed.broadcast(ctx, None)), 0, -1
    data, method = setup.data, setup.method
    data_tags, inputs = data_record(data)
    tags = {**run_tags(config, data.ref, data.split, req.preset), **data_tags,
            **{Tags.named(k): v for k, v in {**method.extra_tags(), **method.speed.tags()}.items()},
            Tags.WORLD_SIZE: str(ctx.world_size), **(req.tags or {})}
    params = {**config.to_dict(), "total_iterations": setup.total, "train_images": len(data.photos)}
    tracker = start_run(req.tracking_uri, req.experiment, req.run_name or _default_run_name(config), tags, params,
                        config.to_dict(), inputs, parent_run_id=req.parent_run_id, lease=True)
    req.echo(f"MLflow run {tracker.run_id} ({tracker.name}) in experiment {req.experiment!r}"
             + (f", {ctx.world_size} process{'es' if ctx.world_size > 1 else ''} (DDP)." if ctx.distributed else "."))
    distributed.broadcast(ctx, tracker.run_id)
    return tracker, 0, -1


def _resume_run(req: TrainRequest, ctx: distributed.Context, setup: Setup, resumed_run):
    """The run, its lease taken (one writer: :class:`cgbench.errors.LeaseHeld` when another live
    process writes it), its newest readable checkpoint loaded, and only then marked RUNNING: a
    resume that fails before that leaves the run as it was."""
    run_id = resumed_run.info.run_id
    moved = check_same_data(resumed_run, setup.data)
    tracker = RunTracker.claim(req.tracking_uri, run_id) if ctx.is_main else _NoTracker(run_id)
    try:
        if moved:
            tracker.set_tags(moved)
            req.echo(f"The run's data now lies in {moved[Tags.DATA_ROOT]} (same training and validation data); "
                     f"recorded as {Tags.DATA_ROOT}.")
        # Rank 0 reads the checkpoint and sends it to the others (on the CPU: it travels pickled).
        state = tracker.load_checkpoint(map_location="cpu" if ctx.distributed else setup.device) if ctx.is_main else None
        state = distributed.broadcast(ctx, state)
        start = 0
        if state is not None:
            load_training_state(setup.method, state, ctx)
            start = state["iteration"]
        last_logged = tracker.last_logged_step("loss/" + setup.method.terms[0]) if ctx.is_main else -1
        tracker.mark_running()
    except BaseException:
        tracker.release_lease()
        raise
    req.echo(f"Resuming run {run_id} at iteration {start} of {setup.total}.")
    return tracker, start, last_logged


def resumed_data(run, config: Config, data: str | None) -> str:
    """The data a resumed run reads: ``data`` (``--data``: its dataset moved), else the folder it
    last recorded reading (tag ``cgbench.data_root``) while that exists, else its config's."""
    recorded = run.data.tags.get(Tags.DATA_ROOT)
    if data is None and recorded and Path(recorded).is_dir():
        return recorded
    return data or config.data


def check_same_data(run, data: TrainingData) -> dict[str, str]:
    """The data a resumed run reads holds what it was trained on (the training and validation
    digests it recorded), else a one-line error naming both digests; returns the tags to set
    when the data now lies in another folder (its new root, and where it was)."""
    root, tags = data.ref.root, run.data.tags
    found = {Tags.DATASET_DIGEST: data.split.digest}
    if Tags.VAL_DIGEST in tags:  # runs from before the tag: the training data only
        found[Tags.VAL_DIGEST] = val_digest(root)
    for tag, digest in found.items():
        if tags.get(tag) != digest:
            what = "training" if tag == Tags.DATASET_DIGEST else "validation"
            raise DataError(f"the {what} data at {root} (digest {digest}) is not the data run {run.info.run_id} was "
                            f"trained on (digest {tags.get(tag)}); resume with --data naming the folder that holds it")
    new_root, old_root = str(root.resolve()), tags.get(Tags.DATA_ROOT)
    if new_root == old_root:
        return {}
    return {Tags.DATA_ROOT: new_root, **({Tags.DATA_MOVED_FROM: old_root} if old_root else {})}


class _NoTracker:
    """What ranks other than 0 hold instead of a :class:`RunTracker`: the run's id, and methods
    that write nothing (only rank 0 writes to MLflow)."""

    def __init__(self, run_id: str = ""):
        self.run_id = run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def save_checkpoint(self, state: dict, step: int) -> None:
        pass

    def log_image_rows(self, rows: list[torch.Tensor], name: str) -> None:
        pass

    def end(self, status: str = "FINISHED") -> None:
        pass

    def mark_running(self) -> None:
        pass

    def release_lease(self) -> None:
        pass

    @contextlib.contextmanager
    def ending(self) -> Iterator[_NoTracker]:
        yield self


def row_key(config: Config) -> str:
    """The row a run fills in the paper's tables: its ablation for CycleGAN, else its method."""
    return config.ablation if config.method == "cyclegan" else config.method


def run_tags(config: Config, ref: datasets.DatasetRef, split: Split, preset: str | None) -> dict[str, str]:
    return {
        Tags.METHOD: config.method,
        Tags.ROW: row_key(config),
        Tags.ABLATION: config.ablation if config.method == "cyclegan" else "",
        Tags.DATASET: ref.name,
        Tags.DATASET_DIGEST: split.digest,
        Tags.DATASET_LAYOUT: split.layout,
        Tags.PRESET: preset or "",
        Tags.SEED: str(config.seed),
        Tags.PREP: getattr(config, "prep", "clean"),
        Tags.IMAGE_SIZE: str(config.image_size),
    }


def val_digest(root) -> str | None:
    """The digest of the dataset's validation split, without decoding it (None: the data has none)."""
    try:
        return split_digest(root, "val")
    except DataError:
        return None


def data_record(data: TrainingData) -> tuple[dict[str, str], list[tuple[str, str, str, str]]]:
    """What a new run records about its data: tags (the folder, the training and validation
    digests) and MLflow dataset inputs (training, and the validation split as "evaluation")."""
    root = str(data.ref.root.resolve())
    inputs = [(data.ref.name, root, data.split.digest, "training")]
    tags = {Tags.DATA_ROOT: root}
    val = val_digest(data.ref.root)
    if val is not None:
        tags[Tags.VAL_DIGEST] = val
        inputs.append((data.ref.name + "-val", root, val, "evaluation"))
    return tags, inputs


def _default_run_name(config: Config) -> str:
    return f"{row_key(config)}-seed{config.seed}"


def _silent(*_: object) -> None:
    pass

