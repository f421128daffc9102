"""A sweep's progress display: one bar over the training iterations of the whole plan, fed by the
children wherever they run."""

from __future__ import annotations

from typing import Callable

from cgbench.config import Config
from cgbench.sweep.plan import Child, ChildStatus, train_images


class PlanProgress:
    """One progress bar over the training iterations of the whole plan, naming the runs in flight
    and their iteration; tqdm's rate gives the time left."""

    def __init__(self, todo: list[Child], enabled: bool):
        from tqdm.auto import tqdm

        total = sum(iterations(c.config) for c in todo if c.status != ChildStatus.EVALUATE)
        self.bar = tqdm(total=total, unit="it", desc="sweep", disable=not enabled, dynamic_ncols=True)
        self.seen: dict[str, int] = {}
        self.active: dict[str, str] = {}

    def update(self, label: str, iteration: int, total: int) -> None:
        self.bar.update(iteration - self.seen.get(label, 0))
        self.seen[label] = iteration
        self.active[label] = f"{label} {iteration}/{total}"
        self.bar.set_postfix_str("; ".join(self.active.values()), refresh=True)

    def finished(self, label: str) -> None:
        self.active.pop(label, None)

    def write(self, line: str, echo: Callable[[str], None]) -> None:
        if self.bar.disable:
            echo(line)
        else:
            self.bar.write(line)

    def close(self) -> None:
        self.bar.close()


def iterations(config: Config) -> int:
    """The training iterations of one run of ``config``."""
    return config.iters if config.iters > 0 else int(config.epochs * train_images(config))


def drain(queue, progress: PlanProgress) -> None:
    """Show the workers' progress, sent through ``queue`` (:class:`QueueProgress`), until a None."""
    while (item := queue.get()) is not None:
        progress.update(*item)


class QueueProgress:
    """Sends a worker's progress to the parent's plan display (picklable, unlike a closure)."""

    def __init__(self, queue):
        self.queue = queue

    def __call__(self, label: str, iteration: int, total: int) -> None:
        try:
            self.queue.put((label, iteration, total))
        except Exception:  # the display is gone (the sweep is stopping): training goes on regardless
            pass
