"""The training loop: data → method.train_step → MLflow, with checkpoints, resume and signals.

Every ``log_every`` iterations the loop records every loss term of the method under
``loss/<term>``, the learning rate and the seconds per iteration; metrics are buffered and
written together with each checkpoint, so a resumed run (also after SIGKILL) records every
iteration exactly once: a resumed run replays from its last checkpoint and skips recording the
iterations MLflow already holds, which a seeded, deterministic replay reproduces.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from typing import Callable

import torch

from cgbench.config import Config, validate
from cgbench.data import datasets
from cgbench.data.labels import colorize
from cgbench.data.layouts import Split, load_split
from cgbench.data.sampler import PairedSampler, UnpairedSampler, to_uint8, to_unit_range
from cgbench.errors import ConfigError, DataError
from cgbench.methods import get_method
from cgbench.methods.base import Method
from cgbench.tracking import CONFIG_ARTIFACT, TAG_PREFIX, RunTracker, recorded_config

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
    labels_rgb: torch.Tensor  # (N, 3, L, L) uint8 official colours: domain X
    photos: torch.Tensor  # (N, 3, L, L) uint8: domain Y


def load_training_data(config: Config, echo: Callable[[str], None] = print) -> TrainingData:
    ref = datasets.resolve(config.data, config.image_size, echo=echo)
    split = load_split(ref.root, "train", size=config.load_size)
    if len(split.photos) < 2:
        raise DataError(f"the training split of {ref.root} has {len(split.photos)} images; it needs at least 2")
    labels_rgb = torch.from_numpy(colorize(split.labels.numpy())).permute(0, 3, 1, 2).contiguous()
    return TrainingData(ref, split, labels_rgb, split.photos)


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
) -> TrainResult:
    """Train ``config`` (or continue ``resume_run_id``) and record it in MLflow.

    ``on_progress(iteration, total)``, if given, is called every ``log_every`` iterations (sweeps
    use it to show the progress of the whole plan)."""
    if resume_run_id:
        tracker = RunTracker.reopen(tracking_uri, resume_run_id)
        config = recorded_config(tracker.client, resume_run_id, "resumed")
    validate(config)
    get_method(config.method)  # unknown method: fail before touching data
    device = resolve_device(config.device)
    if config.threads > 0:
        torch.set_num_threads(config.threads)

    data = load_training_data(config, echo=echo)
    torch.manual_seed(config.seed)
    method = get_method(config.method)(config, device)
    check_network_input(method, config)
    method.accelerate()
    sampler = (PairedSampler if method.paired else UnpairedSampler)(
        data.labels_rgb, data.photos, config.image_size, config.batch_size, config.seed, config.flip, config.disjoint
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
        if tracker.run.data.tags.get(TAG_PREFIX + "dataset_digest") != data.split.digest:
            raise DataError(
                f"the data at {data.ref.root} differs from the data run {resume_run_id} was trained on "
                "(dataset digest changed); resume with the original dataset"
            )
        state = tracker.load_checkpoint(map_location=device)
        if state is not None:
            method.load_state_dict(state["method"])
            torch.set_rng_state(state["torch_rng"])
            start = state["iteration"]
        last_logged = tracker.last_logged_step("loss/" + method.terms[0])
        echo(f"Resuming run {resume_run_id} at iteration {start} of {total}.")
        if start >= total:
            tracker.end("FINISHED")
            return TrainResult(tracker.run_id, start, "FINISHED", math.nan, 0.0, 0.0, 0.0)
    else:
        tracker = RunTracker.create(
            tracking_uri, experiment, run_name or _default_run_name(config),
            {**run_tags(config, data.ref, data.split, preset),
             **{TAG_PREFIX + k: v for k, v in {**method.extra_tags(), **method.speed.tags()}.items()},
             **(tags or {})},
            parent_run_id=parent_run_id,
        )
        tracker.log_params({**config.to_dict(), "total_iterations": total, "train_images": len(data.photos)})
        tracker.log_json(config.to_dict(), CONFIG_ARTIFACT)
        tracker.log_environment()
        tracker.log_dataset(data.ref.name, str(data.ref.root.resolve()), data.split.digest)
        echo(f"MLflow run {tracker.run_id} ({tracker.name}) in experiment {experiment!r}.")

    sample_x = to_unit_range(_center_crop(data.labels_rgb[:4], config.image_size)).to(device)
    sample_y = to_unit_range(_center_crop(data.photos[:4], config.image_size)).to(device)

    timers = {"data": 0.0, "log": 0.0, "checkpoint": 0.0, "loop": 0.0}

    def checkpoint(iteration: int) -> None:
        t = time.perf_counter()
        tracker.flush()  # metrics up to `iteration` are recorded before the checkpoint that covers them
        timers["log"] += time.perf_counter() - t
        tracker.save_checkpoint(
            {
                "iteration": iteration,
                "config": config.to_dict(),
                "method": method.state_dict(),
                "torch_rng": torch.get_rng_state(),
            },
            iteration,
        )

    def log_samples(iteration: int) -> None:
        tracker.log_image_rows(_sample_rows(method, sample_x, sample_y), f"samples/iter_{iteration:08d}.png")

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start, disable=not progress, unit="it", dynamic_ncols=True, leave=False)
    window_start, window_iters, windows = time.perf_counter(), 0, []
    iteration = start
    method.train(True)
    try:
        with _StopRequest() as stop:
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
                    values = dict(zip(losses, torch.stack(list(losses.values())).tolist()))
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
                if stop.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        checkpoint(iteration)
        tracker.end("KILLED")
        raise Interrupted(tracker.run_id, iteration) from None
    except NonFiniteLoss as exc:
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


def _center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    top = (images.shape[-2] - size) // 2
    left = (images.shape[-1] - size) // 2
    return images[..., top : top + size, left : left + size]


def _default_run_name(config: Config) -> str:
    return f"{row_key(config)}-seed{config.seed}"
