"""The training loop of one run, top to bottom: batch → train_step → log → checkpoint.

Every ``log_every`` iterations the loop records every loss term of the method under
``loss/<term>``, the learning rate and the seconds per iteration; metrics are buffered and
written together with each checkpoint, so a resumed run (also after SIGKILL) records every
iteration exactly once: a resumed run replays from its last checkpoint and skips recording the
iterations MLflow already holds, which a seeded, deterministic replay reproduces.

Under DistributedDataParallel (``cgbench run --nproc N`` or torchrun; see
:mod:`cgbench.distributed`) every rank runs this loop on its own block of each step's batch.
Rank 0 alone writes to MLflow; the logged losses are the means over the ranks; a stop request
on any rank stops every rank after the same iteration; and every checkpoint holds every rank's
state and checks that the ranks hold the same weights (:mod:`cgbench.training.state`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from cgbench import distributed
from cgbench.config import Config
from cgbench.data.sampler import to_uint8, to_unit_range
from cgbench.errors import Interrupted, NonFiniteLoss
from cgbench.methods.base import Method
from cgbench.training.setup import Setup
from cgbench.training.state import rank_state, verify_same_weights


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

    def run(self, start: int, stop: StopRequest, progress: bool,
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


class StopRequest:
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

    def __enter__(self) -> StopRequest:
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if self.requested else handler)


class Timers(dict):
    """Seconds spent per part of the loop, added up with ``with timers("part"):``."""

    @contextlib.contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[part] = self.get(part, 0.0) + time.perf_counter() - start


@dataclass
class TrainResult:
    """What :func:`cgbench.training.train` returns: the run, how far it got, and where its time went."""

    run_id: str
    iterations: int
    status: str
    sec_per_iter: float  # median over logged windows
    data_fraction: float  # share of loop time spent producing batches
    log_fraction: float  # share of loop time spent recording metrics (buffering and flushes)
    checkpoint_seconds: float  # writing checkpoints and sample grids (including the flush before each)


def lr_factor(iteration: int, total: int, decay_fraction: float) -> float:
    """Constant, then linear decay to 0 over the last ``decay_fraction`` of training."""
    decay_start = total * (1.0 - decay_fraction)
    if iteration < decay_start:
        return 1.0
    return max(0.0, (total - iteration) / max(total - decay_start, 1e-12))


def _sample_rows(method: Method, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The method's sample rows (e.g. x, G(x), F(G(x)), y, F(y), G(F(y))) as uint8 batches."""
    method.train(False)
    with torch.no_grad():
        rows = method.samples(x, y)
    method.train(True)
    return [to_uint8(v) for v in rows.values()]


def _center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    top = (images.shape[-2] - size) // 2
    left = (images.shape[-1] - size) // 2
    return images[..., top : top + size, left : left + size]

