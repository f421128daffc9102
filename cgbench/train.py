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

import math
import os
import signal
import time
from dataclasses import dataclass
from typing import Callable

import torch

from cgbench import distributed
from cgbench.config import Config, validate
from cgbench.data import datasets
from cgbench.data.layouts import Split, load_split
from cgbench.data.sampler import PairedSampler, UnpairedSampler, to_uint8, to_unit_range
from cgbench.errors import ConfigError, DataError
from cgbench.methods import get_method
from cgbench.methods.base import Method
from cgbench.tracking import CONFIG_ARTIFACT, TAG_PREFIX, RunTracker, client_for, get_run, recorded_config

WORLD_SIZE_TAG = TAG_PREFIX + "world_size"  # processes the run trains on; resuming needs as many
DIGESTS_TAG = TAG_PREFIX + "ddp_weight_digests"  # per rank, the 12-hex prefix of its weights' sha256


class NonFiniteLoss(Exception):
    """A loss term became NaN or infinite; the run is marked FAILED."""

    def __init__(self, iteration: int, term: str, value: float):
        super().__init__(f"loss term {term!r} is {value} at iteration {iteration}; the run is marked FAILED "
                         "(try a lower lr, or gan_mode=lsgan)")
        self.iteration, self.term = iteration, term


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: the run was checkpointed and marked KILLED."""

    def __init__(self, run_id: str, iteration: int):
        super().__init__(f"interrupted at iteration {iteration}; checkpointed. Continue with: "
                         f"cgbench run --resume {run_id}")
        self.run_id, self.iteration = run_id, iteration


class RanksDiverged(Exception):
    """The processes of a distributed run hold different weights; the run is marked FAILED."""

    def __init__(self, iteration: int, digests: list[str]):
        super().__init__(f"the {len(digests)} processes hold different weights at iteration {iteration} "
                         f"(digests {', '.join(d[:12] for d in digests)}); the run is marked FAILED")
        self.iteration, self.digests = iteration, digests


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


@dataclass
class TrainResult:
    run_id: str
    iterations: int
    status: str
    sec_per_iter: float  # median over logged windows
    data_fraction: float  # share of loop time spent producing batches
    log_fraction: float  # share of loop time spent recording metrics (buffering and flushes)
    checkpoint_seconds: float  # writing checkpoints and sample grids (including the flush before each)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a torch device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is available; use --set device=auto")
    return device


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
    """Turns Ctrl-C and SIGTERM into a request honoured between iterations, so a checkpoint
    never holds a half-done iteration. A second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


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
        TAG_PREFIX + "method": config.method,
        TAG_PREFIX + "row": row_key(config),
        TAG_PREFIX + "ablation": config.ablation if config.method == "cyclegan" else "",
        TAG_PREFIX + "dataset": ref.name,
        TAG_PREFIX + "dataset_digest": split.digest,
        TAG_PREFIX + "dataset_layout": split.layout,
        TAG_PREFIX + "preset": preset or "",
        TAG_PREFIX + "seed": str(config.seed),
    }


def train(
    config: Config,
    tracking_uri: str | None = None,
    experiment: str = "cgbench",
    preset: str | None = None,
    resume_run_id: str | None = None,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    on_progress: Callable[[int, int], None] | None = None,
    device: str | None = None,
) -> TrainResult:
    """Train ``config`` (or continue ``resume_run_id``) and record it in MLflow.

    ``device``, if given, replaces the config's device (sweeps place their children on GPUs).

    ``on_progress(iteration, total)``, if given, is called every ``log_every`` iterations (sweeps
    use it to show the progress of the whole plan). When the environment describes a process
    group (torchrun, or ``cgbench run --nproc``), this process joins it and trains as its rank."""
    world_size = distributed.requested_world_size()
    resumed_run = None
    if resume_run_id:
        client = client_for(tracking_uri)
        resumed_run = get_run(client, resume_run_id)
        check_resume_world_size(resumed_run, world_size)
        config = recorded_config(client, resume_run_id, "resumed")
    if device is not None:
        config = config.replace(device=device)
    validate(config)
    check_method(config.method, distributed.env_describes_group())  # unknown method: fail before touching data
    with distributed.process_group(config.device) as ctx:
        return _train(config, ctx, tracking_uri, experiment, preset, resumed_run, parent_run_id, run_name, tags,
                      progress, echo, on_progress)


def check_method(name: str, in_group: bool) -> None:
    """The method exists and, when it is to train in a process group, can train under
    DistributedDataParallel."""
    cls = get_method(name)
    if in_group and not cls.supports_ddp:
        raise ConfigError(f"method {name!r} cannot train under DistributedDataParallel; drop --nproc")


def trained_world_size(run) -> int:
    """How many processes a run was trained on (runs from before the tag: 1)."""
    return int(run.data.tags.get(WORLD_SIZE_TAG, "1"))


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


def _train(
    config: Config,
    ctx: distributed.Context,
    tracking_uri: str | None,
    experiment: str,
    preset: str | None,
    resumed_run,
    parent_run_id: str | None,
    run_name: str | None,
    tags: dict[str, str] | None,
    progress: bool,
    echo: Callable[[str], None],
    on_progress: Callable[[int, int], None] | None,
) -> TrainResult:
    """The body of :func:`train`, as rank ``ctx.rank`` of ``ctx.world_size``."""
    resume_run_id = resumed_run.info.run_id if resumed_run is not None else None
    if not ctx.is_main:
        echo, progress, on_progress = _silent, False, None
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
    method.accelerate()
    sampler = (PairedSampler if method.paired else UnpairedSampler)(
        data.labels_rgb, data.photos, config.image_size, config.batch_size, config.seed, config.flip, config.disjoint,
        rank=ctx.rank, world_size=ctx.world_size,
    )
    total = total_iterations(config, sampler.steps_per_epoch)

    def set_learning_rate(iteration: int) -> float:
        """The schedule is a pure function of the iteration, so resuming needs only the iteration."""
        lr = config.lr * lr_factor(iteration, total, config.decay_fraction)
        for optimizer in method.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = lr
        return lr

    start, last_logged = 0, -1
    if resume_run_id:
        if resumed_run.data.tags.get(TAG_PREFIX + "dataset_digest") != data.split.digest:
            raise DataError(
                f"the data at {data.ref.root} differs from the data run {resume_run_id} was trained on "
                "(dataset digest changed); resume with the original dataset"
            )
        tracker = RunTracker.reopen(tracking_uri, resume_run_id) if ctx.is_main else _NoTracker(resume_run_id)
        # Rank 0 reads the checkpoint and sends it to the others (on the CPU: it travels pickled).
        state = tracker.load_checkpoint(map_location="cpu" if ctx.distributed else device) if ctx.is_main else None
        state = distributed.broadcast(ctx, state)
        if state is not None:
            load_training_state(method, state, ctx)
            start = state["iteration"]
        if ctx.is_main:
            last_logged = tracker.last_logged_step("loss/" + method.terms[0])
        echo(f"Resuming run {resume_run_id} at iteration {start} of {total}.")
        if start >= total:
            tracker.end("FINISHED")
            return TrainResult(tracker.run_id, start, "FINISHED", math.nan, 0.0, 0.0, 0.0)
    elif ctx.is_main:
        tracker = RunTracker.create(
            tracking_uri, experiment, run_name or _default_run_name(config),
            {**run_tags(config, data.ref, data.split, preset),
             **{TAG_PREFIX + k: v for k, v in {**method.extra_tags(), **method.speed.tags()}.items()},
             WORLD_SIZE_TAG: str(ctx.world_size),
             **(tags or {})},
            parent_run_id=parent_run_id,
        )
        tracker.log_params({**config.to_dict(), "total_iterations": total, "train_images": len(data.photos)})
        tracker.log_json(config.to_dict(), CONFIG_ARTIFACT)
        tracker.log_environment()
        tracker.log_dataset(data.ref.name, str(data.ref.root.resolve()), data.split.digest)
        echo(f"MLflow run {tracker.run_id} ({tracker.name}) in experiment {experiment!r}"
             + (f", {ctx.world_size} process{'es' if ctx.world_size > 1 else ''} (DDP)." if ctx.distributed else "."))
        distributed.broadcast(ctx, tracker.run_id)
    else:
        tracker = _NoTracker(distributed.broadcast(ctx, None))

    sample_x = to_unit_range(_center_crop(data.labels_rgb[:4], config.image_size)).to(device)
    sample_y = to_unit_range(_center_crop(data.photos[:4], config.image_size)).to(device)

    timers = {"data": 0.0, "log": 0.0, "checkpoint": 0.0, "loop": 0.0}
    checkpointed = {"iteration": start}

    def checkpoint(iteration: int) -> None:
        """Collective under DDP: every rank calls it after the same iteration."""
        t = time.perf_counter()
        tracker.flush()  # metrics up to `iteration` are recorded before the checkpoint that covers them
        timers["log"] += time.perf_counter() - t
        state = {
            "iteration": iteration,
            "config": config.to_dict(),
            "method": method.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        if ctx.distributed:
            verify_same_weights(ctx, method, tracker, iteration)
            state["world_size"] = ctx.world_size
            state["ranks"] = distributed.gather(ctx, rank_state(method))
        tracker.save_checkpoint(state, iteration)
        checkpointed["iteration"] = iteration

    def log_samples(iteration: int) -> None:
        if ctx.is_main:
            tracker.log_image_rows(_sample_rows(method, sample_x, sample_y), f"samples/iter_{iteration:08d}.png")

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start, disable=not progress, unit="it", dynamic_ncols=True, leave=False)
    window_start, window_iters, windows = time.perf_counter(), 0, []
    iteration = start
    agreed_stop = False
    method.train(True)
    try:
        with _StopRequest() as stop, method.halves.pinned_threads():
            for step in range(start, total):
                t0 = time.perf_counter()
                x, y = sampler.batch(step, device)
                t1 = time.perf_counter()
                lr = set_learning_rate(step)
                losses = method.train_step(x, y)
                iteration = step + 1
                t2 = time.perf_counter()

                window_iters += 1
                if iteration % config.log_every == 0 or iteration == total:
                    # Under DDP: the mean over the ranks, so every rank sees the same numbers.
                    values = dict(zip(losses, distributed.mean(ctx, torch.stack(list(losses.values()))).tolist()))
                    for term, value in values.items():
                        if not math.isfinite(value):
                            raise NonFiniteLoss(iteration, term, value)
                    now = time.perf_counter()
                    sec_per_iter = (now - window_start) / window_iters
                    windows.append(sec_per_iter)
                    window_start, window_iters = now, 0
                    if iteration > last_logged:
                        metrics = {f"loss/{k}": v for k, v in values.items()}
                        metrics["lr"] = lr
                        metrics["perf/sec_per_iter"] = sec_per_iter
                        tracker.log_metrics(metrics, iteration)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in values.items() if v}, refresh=False)
                    if on_progress is not None:
                        on_progress(iteration, total)
                t3 = time.perf_counter()
                if iteration % config.checkpoint_every == 0 or iteration == total:
                    checkpoint(iteration)
                if config.sample_every and iteration % config.sample_every == 0 and iteration != total:
                    log_samples(iteration)
                t4 = time.perf_counter()
                bar.update(1)
                timers["data"] += t1 - t0
                timers["log"] += t3 - t2
                timers["checkpoint"] += t4 - t3
                timers["loop"] += t4 - t0
                if distributed.any_rank(ctx, stop.requested):  # all ranks stop after the same iteration
                    agreed_stop = True
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        if ctx.distributed and not agreed_stop:
            # A second Ctrl-C stopped this rank at once, mid-iteration: the ranks are out of step
            # and cannot checkpoint together; the run resumes from its last checkpoint.
            tracker.end("KILLED")
            raise Interrupted(tracker.run_id, checkpointed["iteration"]) from None
        checkpoint(iteration)
        tracker.end("KILLED")
        raise Interrupted(tracker.run_id, iteration) from None
    except (NonFiniteLoss, RanksDiverged) as exc:
        bar.close()
        tracker.set_tags({TAG_PREFIX + "failure": str(exc)})
        tracker.end("FAILED")
        raise
    except BaseException:
        bar.close()
        tracker.end("FAILED")
        raise
    bar.close()
    log_samples(total)
    tracker.end("FINISHED")
    windows.sort()
    median = windows[len(windows) // 2] if windows else math.nan
    loop = max(timers["loop"], 1e-12)
    return TrainResult(
        tracker.run_id, total, "FINISHED", median, timers["data"] / loop, timers["log"] / loop, timers["checkpoint"]
    )


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
    tracker.set_tags({DIGESTS_TAG: ",".join(d[:12] for d in digests)})
    if len(set(digests)) > 1:
        raise RanksDiverged(iteration, digests)


def _center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    top = (images.shape[-2] - size) // 2
    left = (images.shape[-1] - size) // 2
    return images[..., top : top + size, left : left + size]


def _default_run_name(config: Config) -> str:
    return f"{row_key(config)}-seed{config.seed}"
