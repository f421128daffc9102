"""The training loop: data → method.train_step → MLflow, with checkpoints, resume and signals.

Every ``log_every`` iterations the loop records every loss term of the method under
``loss/<term>``, the learning rate and the seconds per iteration; metrics are buffered and
written together with each checkpoint, so a resumed run (also after SIGKILL) records every
iteration exactly once: a resumed run replays from its last checkpoint and skips recording the
iterations MLflow already holds, which a seeded, deterministic replay reproduces.

Under DistributedDataParallel (``cgbench run --nproc N`` or torchrun; see
:mod:`cgbench.distributed`) every rank runs this loop on its own block of each step's batch.
Rank 0 alone writes to MLflow; the logged losses are the means over the ranks; a stop request
on any rank stops every rank after the same iteration; checkpoints hold the shared state once
and each rank's own image pools and RNG under ``ranks``; and at every checkpoint the ranks
compare digests of their weights (tag ``cgbench.ddp_weight_digests``) and fail the run if they
differ.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from cgbench import distributed
from cgbench.config import Config, validate
from cgbench.data import datasets
from cgbench.data.layouts import Split, load_split, split_digest
from cgbench.data.sampler import PairedSampler, UnpairedSampler, to_uint8, to_unit_range
from cgbench.devices import resolve_device
from cgbench.errors import ConfigError, DataError, Interrupted, NonFiniteLoss, RanksDiverged
from cgbench.methods import get_method
from cgbench.methods.base import Method
from cgbench.protocol import Tags
from cgbench.speed import accelerate
from cgbench.tracking import RunTracker, client_for, get_run, recorded_config, start_run

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


@dataclass
class TrainResult:
    run_id: str
    iterations: int
    status: str
    sec_per_iter: float  # median over logged windows
    data_fraction: float  # share of loop time spent producing batches
    log_fraction: float  # share of loop time spent recording metrics (buffering and flushes)
    checkpoint_seconds: float  # writing checkpoints and sample grids (including the flush before each)


def total_iterations(config: Config, steps_per_epoch: int) -> int:
    return config.iters if config.iters > 0 else max(1, round(config.epochs * steps_per_epoch))


def lr_factor(iteration: int, total: int, decay_fraction: float) -> float:
    """Constant, then linear decay to 0 over the last ``decay_fraction`` of training."""
    decay_start = total * (1.0 - decay_fraction)
    if iteration < decay_start:
        return 1.0
    return max(0.0, (total - iteration) / max(total - decay_start, 1e-12))


@dataclass
class TrainingData:
    ref: datasets.DatasetRef
    split: Split
    labels_rgb: torch.Tensor  # (N, 3, L, L) uint8 colour label maps (every label's colour): domain X
    photos: torch.Tensor  # (N, 3, L, L) uint8: domain Y


def load_training_data(config: Config, echo: Callable[[str], None] = print) -> TrainingData:
    ref = datasets.resolve(config.data, config.image_size, echo=echo)
    split = load_split(ref.root, "train", size=config.load_size, prep=config.prep)
    if len(split.photos) < 2:
        raise DataError(f"the training split of {ref.root} has {len(split.photos)} images; it needs at least 2")
    return TrainingData(ref, split, split.label_colors, split.photos)


def check_network_input(method: Method, config: Config) -> None:
    """Fail early, in one line, when the networks cannot take the image size."""
    probe = torch.zeros(1, 3, config.image_size, config.image_size, device=method.device)
    try:
        with torch.no_grad():
            method.probe(probe)
    except RuntimeError:
        raise ConfigError(
            f"image_size {config.image_size} is too small for the networks (n_layers_d={config.n_layers_d}); "
            "use image_size >= 32 or fewer discriminator layers"
        ) from None


class _StopRequest:
    """Turns Ctrl-C and SIGTERM into a request honoured between iterations: every rank stops after
    the same iteration, whose metrics are flushed and checkpointed before the run is marked KILLED.
    More signals change nothing: the stop under way always finishes (never a flush cut short, a
    checkpoint without its metrics, or a run left RUNNING), within one iteration. Once a stop was
    requested the signals stay ignored after the block too: the process is on its way out."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> _StopRequest:
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if self.requested else handler)


def _sample_rows(method: Method, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The method's sample rows (e.g. x, G(x), F(G(x)), y, F(y), G(F(y))) as uint8 batches."""
    method.train(False)
    with torch.no_grad():
        rows = method.samples(x, y)
    method.train(True)
    return [to_uint8(v) for v in rows.values()]


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
        raise ConfigError(f"run {run.info.run_id} is not a training run (cgbench.method={method!r}); --resume "
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


def _silent(*_: object) -> None:
    pass


@dataclass
class Setup:
    """Everything a run trains with, built before the run is opened."""

    device: torch.device
    data: TrainingData
    method: Method
    sampler: UnpairedSampler | PairedSampler
    total: int


def prepare(config: Config, ctx: distributed.Context, echo: Callable[[str], None]) -> Setup:
    """Device and threads, the training data, the method (with its speed settings), the sampler."""
    device = resolve_device(config.device)
    if ctx.distributed and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    elif ctx.distributed and device.type == "cpu":  # the local processes share the cores
        local = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    with distributed.rank_zero_first(ctx):  # rank 0 generates SynthCity if it is missing
        data = load_training_data(config, echo=echo)
    torch.manual_seed(config.seed)
    method = get_method(config.method)(config, device)
    check_network_input(method, config)
    accelerate(method)
    sampler = (PairedSampler if method.paired else UnpairedSampler)(
        data.labels_rgb, data.photos, config.image_size, config.batch_size, config.seed, config.flip, config.disjoint,
        rank=ctx.rank, world_size=ctx.world_size,
    )
    return Setup(device, data, method, sampler, total_iterations(config, sampler.steps_per_epoch))


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
    """The run, its lease taken (one writer: :class:`cgbench.leases.LeaseHeld` when another live
    process writes it), its newest readable checkpoint loaded, and only then marked RUNNING: a
    resume that fails before that leaves the run as it was."""
    run_id = resumed_run.info.run_id
    if resumed_run.data.tags.get(Tags.DATASET_DIGEST) != setup.data.split.digest:
        raise DataError(f"the data at {setup.data.ref.root} differs from the data run {run_id} was trained on "
                        "(dataset digest changed); resume with the original dataset")
    tracker = RunTracker.claim(req.tracking_uri, run_id) if ctx.is_main else _NoTracker(run_id)
    try:
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


def _train(req: TrainRequest, config: Config, ctx: distributed.Context, resumed_run) -> TrainResult:
    """The body of :func:`train`, as rank ``ctx.rank`` of ``ctx.world_size``. From the moment the
    run is opened until its status is set, Ctrl-C and SIGTERM are stop requests (:class:`_StopRequest`)."""
    if not ctx.is_main:
        req = dataclasses.replace(req, echo=_silent, progress=False, on_progress=None)
    setup = prepare(config, ctx, req.echo)
    with _StopRequest() as stop:
        tracker, start, last_logged = open_run(req, config, ctx, setup, resumed_run)
        with tracker.ending():
            if start >= setup.total:  # resumed after its last iteration: only its status was left to set
                return TrainResult(tracker.run_id, start, "FINISHED", math.nan, 0.0, 0.0, 0.0)
            loop = Loop(config, ctx, setup, tracker, last_logged)
            loop.run(start, stop, req.progress, req.on_progress)
            loop.log_samples(setup.total)
    return loop.result()


class Timers(dict):
    """Seconds spent per part of the loop, added up with ``with timers("part"):``."""

    @contextlib.contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[part] = self.get(part, 0.0) + time.perf_counter() - start


class Loop:
    """The training loop of one run: batch → train_step → log → checkpoint, with the schedule,
    stop requests and (under DDP) the ranks kept in step."""

    def __init__(self, config: Config, ctx: distributed.Context, setup: Setup, tracker, last_logged: int):
        self.config, self.ctx, self.setup, self.tracker = config, ctx, setup, tracker
        self.method, self.total, self.last_logged = setup.method, setup.total, last_logged
        self.timers = Timers()
        self.windows: list[float] = []  # seconds per iteration, per logged window
        self._window = (time.perf_counter(), 0)  # (start time, first iteration) of the current window
        self.iteration = 0
        images = setup.data
        self.sample_x = to_unit_range(_center_crop(images.labels_rgb[:4], config.image_size)).to(setup.device)
        self.sample_y = to_unit_range(_center_crop(images.photos[:4], config.image_size)).to(setup.device)

    def run(self, start: int, stop: _StopRequest, progress: bool,
            on_progress: Callable[[int, int], None] | None) -> None:
        from tqdm.auto import tqdm

        c, method, sampler = self.config, self.method, self.setup.sampler
        self.iteration = start
        self._window = (time.perf_counter(), start)
        method.train(True)
        with tqdm(total=self.total, initial=start, disable=not progress, unit="it", dynamic_ncols=True,
                  leave=False) as bar, method.halves.pinned_threads():
            try:
                for step in range(start, self.total):
                    if distributed.any_rank(self.ctx, stop.requested):  # all ranks stop before the same iteration
                        raise _AgreedStop
                    with self.timers("loop"):
                        with self.timers("data"):
                            x, y = sampler.batch(step, self.setup.device)
                        lr = self.set_learning_rate(step)
                        losses = method.train_step(x, y)
                        self.iteration = step + 1
                        if self.iteration % c.log_every == 0 or self.iteration == self.total:
                            with self.timers("log"):
                                self.log(losses, lr, bar)
                            if on_progress is not None:
                                on_progress(self.iteration, self.total)
                        with self.timers("checkpoint"):
                            self.checkpoint_and_sample()
                    bar.update(1)
            except _AgreedStop:
                self.interrupted()

    def set_learning_rate(self, iteration: int) -> float:
        """The schedule is a pure function of the iteration, so resuming needs only the iteration."""
        lr = self.config.lr * lr_factor(iteration, self.total, self.config.decay_fraction)
        for optimizer in self.method.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = lr
        return lr

    def log(self, losses: dict[str, torch.Tensor], lr: float, bar) -> None:
        """Every loss term (under DDP the mean over the ranks, so every rank sees the same numbers),
        the learning rate and the seconds per iteration; iterations MLflow holds are not re-recorded."""
        values = dict(zip(losses, distributed.mean(self.ctx, torch.stack(list(losses.values()))).tolist()))
        for term, value in values.items():
            if not math.isfinite(value):
                raise NonFiniteLoss(self.iteration, term, value)
        now = time.perf_counter()
        sec_per_iter = (now - self._window[0]) / max(1, self.iteration - self._window[1])
        self.windows.append(sec_per_iter)
        self._window = (now, self.iteration)
        if self.iteration > self.last_logged:
            metrics = {f"loss/{k}": v for k, v in values.items()}
            self.tracker.log_metrics({**metrics, "lr": lr, "perf/sec_per_iter": sec_per_iter}, self.iteration)
        bar.set_postfix({k: f"{v:.3f}" for k, v in values.items() if v}, refresh=False)

    def checkpoint_and_sample(self) -> None:
        i, c = self.iteration, self.config
        if i % c.checkpoint_every == 0 or i == self.total:
            self.checkpoint()
        if c.sample_every and i % c.sample_every == 0 and i != self.total:
            self.log_samples(i)

    def checkpoint(self) -> None:
        """Collective under DDP: every rank calls it after the same iteration. Metrics up to the
        iteration are recorded before the checkpoint that covers them."""
        with self.timers("log"):
            self.tracker.flush()
        ctx, method = self.ctx, self.method
        state = {"iteration": self.iteration, "config": self.config.to_dict(), "method": method.state_dict(),
                 "torch_rng": torch.get_rng_state()}
        if ctx.distributed:
            verify_same_weights(ctx, method, self.tracker, self.iteration)
            state["world_size"] = ctx.world_size
            state["ranks"] = distributed.gather(ctx, rank_state(method))
        self.tracker.save_checkpoint(state, self.iteration)

    def interrupted(self) -> None:
        """Ctrl-C or SIGTERM: checkpoint where the ranks stopped together (the metrics up to there
        flushed first), then raise :class:`Interrupted`; the run is then marked KILLED."""
        self.checkpoint()
        raise Interrupted(self.tracker.run_id, self.iteration) from None

    def log_samples(self, iteration: int) -> None:
        if self.ctx.is_main:
            rows = _sample_rows(self.method, self.sample_x, self.sample_y)
            self.tracker.log_image_rows(rows, f"samples/iter_{iteration:08d}.png")

    def result(self) -> TrainResult:
        loop = max(self.timers.get("loop", 0.0), 1e-12)
        windows = sorted(self.windows)
        median = windows[len(windows) // 2] if windows else math.nan
        return TrainResult(self.tracker.run_id, self.total, "FINISHED", median, self.timers.get("data", 0.0) / loop,
                           self.timers.get("log", 0.0) / loop, self.timers.get("checkpoint", 0.0))


class _AgreedStop(Exception):
    """Every rank saw a stop request after the same iteration."""


def rank_state(method: Method) -> dict:
    """What differs between the ranks of a distributed run: the image pools (each rank's own
    fakes) and the global torch RNG."""
    return {"pools": {k: pool.state_dict() for k, pool in method.pools.items()}, "torch_rng": torch.get_rng_state()}


def load_training_state(method: Method, state: dict, ctx: distributed.Context) -> None:
    """Load a checkpoint: the shared state, then (when it has them) this rank's pools and RNG."""
    saved = state.get("world_size", 1)
    if saved != ctx.world_size:
        raise ConfigError(f"the checkpoint was written by {saved} processes; resume it with --nproc {saved}")
    method.load_state_dict(state["method"])
    torch.set_rng_state(state["torch_rng"])
    if "ranks" in state:
        mine = state["ranks"][ctx.rank]
        for k, pool in method.pools.items():
            pool.load_state_dict(mine["pools"][k], method.device)
        torch.set_rng_state(mine["torch_rng"])


def verify_same_weights(ctx: distributed.Context, method: Method, tracker, iteration: int) -> None:
    """Collective: every rank's weights digest; rank 0 records them (tag ``cgbench.ddp_weight_digests``),
    and every rank raises :class:`RanksDiverged` when they differ."""
    digests = distributed.all_gather(ctx, distributed.weights_digest(method.networks))
    tracker.set_tags({Tags.DDP_WEIGHT_DIGESTS: ",".join(d[:12] for d in digests)})
    if len(set(digests)) > 1:
        raise RanksDiverged(iteration, digests)


def _center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    top = (images.shape[-2] - size) // 2
    left = (images.shape[-1] - size) // 2
    return images[..., top : top + size, left : left + size]


def _default_run_name(config: Config) -> str:
    return f"{row_key(config)}-seed{config.seed}"
