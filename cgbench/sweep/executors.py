"""Where a sweep's children run: ``--executor local`` (this process, or a pool of worker
processes here) or ``--executor ray`` (:mod:`cgbench.sweep.ray_executor`), and the report each
prints as its children end."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Callable

from cgbench.durations import fmt_seconds
from cgbench.errors import ConfigError
from cgbench.sweep.child import ChildJob, finish, gpu_slots, run_child, worker_init
from cgbench.sweep.plan import Child, ChildStatus
from cgbench.sweep.progress import PlanProgress, QueueProgress, drain
from cgbench.sweep.ray_executor import RayExecutor
from cgbench.sweep.stopping import RESUME_HINT, SweepInterrupted, ignore_stop_signals

EXECUTORS = ("local", "ray")


def make_executor(name: str, jobs: int, ray_address: str | None = None):
    """The executor ``--executor`` names, checked before anything is recorded."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; valid executors: {', '.join(EXECUTORS)}")
    if name == "local":
        if ray_address:
            raise ConfigError("--ray-address needs --executor ray")
        return LocalExecutor(jobs)
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise ConfigError('--executor ray needs Ray, which is not installed; install it with pip install -e ".[ray]"')
    return RayExecutor(jobs, ray_address)


def execute(todo: list[Child], job: ChildJob, executor, progress: bool, echo: Callable[[str], None]) -> None:
    """Run the children ``todo`` on ``executor``, with one progress bar over them and a line for
    each as it ends (how long it took, and about how long the rest will take)."""
    if not todo:
        return
    done_seconds: list[float] = []
    started = time.perf_counter()
    plan = PlanProgress(todo, progress)

    def report(i: int, child: Child) -> None:
        plan.finished(child.label)
        done_seconds.append(child.seconds)
        left = len(todo) - i
        eta = sum(done_seconds) / len(done_seconds) * left / executor.jobs
        state = "done" if child.status == ChildStatus.FINISHED else "FAILED"
        plan.write(f"[{i}/{len(todo)}] {child.label}: {state} in {fmt_seconds(child.seconds)} (run {child.run_id}); "
                   f"elapsed {fmt_seconds(time.perf_counter() - started)}, about {fmt_seconds(eta)} left", echo)

    executor.run(todo, job, plan, report, echo)


class LocalExecutor:
    """A sweep's children as processes on this machine: one after the other in this process
    (``jobs`` 1), else in a pool of ``jobs`` worker processes."""

    def __init__(self, jobs: int):
        self.jobs = jobs

    def threads(self) -> int:
        """The torch threads of each child: the cores shared between the jobs (0: torch's default)."""
        return max(1, (os.cpu_count() or 1) // self.jobs) if self.jobs > 1 else 0

    def run(self, todo: list[Child], job: ChildJob, plan: PlanProgress, report, echo) -> None:
        if self.jobs > 1:
            _execute_in_pool(todo, job, self.jobs, plan, report, echo)
            return
        try:
            for i, child in enumerate(todo, 1):
                what = "training and evaluating" if child.status != ChildStatus.EVALUATE else "evaluating"
                plan.write(f"[{i}/{len(todo)}] {child.label}: {what} ...", echo)
                finish(child, lambda: run_child(child, job, plan.update), echo)
                report(i, child)
        finally:
            plan.close()


_SWEEP_STOPPING = None
"""In a pool worker: the sweep's event, set once the sweep is stopping (see :func:`_pool_child`)."""


def _pool_worker_init(stopping) -> None:
    """A pool worker leaves Ctrl-C to the sweep while it waits for work (a KeyboardInterrupt in an
    idle worker would print a traceback, and a second one would cut its exit short); it takes
    Ctrl-C only while it works on a child (:func:`_pool_child`)."""
    global _SWEEP_STOPPING
    worker_init()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _SWEEP_STOPPING = stopping


def _pool_child(child: Child, job: ChildJob, on_progress: QueueProgress, gpus) -> tuple[str, ChildStatus, float]:
    """:func:`run_child` in a pool worker, stopped by Ctrl-C (a training run checkpoints and is
    marked KILLED, evaluation stops), the worker idle again afterwards. A child that the pool had
    already handed to a worker when the sweep began to stop is never started."""
    if _SWEEP_STOPPING is not None and _SWEEP_STOPPING.is_set():
        return "", ChildStatus.NOT_STARTED, 0.0
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_child(child, job, on_progress, gpus)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _execute_in_pool(todo: list[Child], job: ChildJob, jobs: int, plan: PlanProgress, report, echo) -> None:
    """The children in ``jobs`` worker processes. Ctrl-C or SIGTERM: every worker is asked to stop
    (SIGINT: a training run checkpoints and is marked KILLED; evaluation stops), no child not yet
    started starts, the sweep waits for them, ignoring more signals meanwhile, and raises
    :class:`SweepInterrupted`."""
    import threading
    from multiprocessing.managers import SyncManager

    context = get_context("spawn")
    stopping = context.Event()
    manager = SyncManager(ctx=context)
    manager.start(ignore_stop_signals)  # the progress queue outlives a Ctrl-C or SIGTERM to the process group
    with manager, ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_pool_worker_init,
                                      initargs=(stopping,)) as pool:
        queue = manager.Queue()
        drainer = threading.Thread(target=drain, args=(queue, plan), daemon=True)
        drainer.start()
        slots = gpu_slots(jobs, _cuda_device_count())
        gpus = None
        if slots:
            gpus = manager.Queue()
            for gpu in slots:
                gpus.put(gpu)
        futures = {pool.submit(_pool_child, child, job, QueueProgress(queue), gpus): child for child in todo}
        plan.write(f"Running {len(todo)} runs in {jobs} processes ({job.threads} threads each"
                   + (f", on {len(set(slots))} GPUs" if slots else "") + ") ...", echo)
        try:
            for i, future in enumerate(as_completed(futures), 1):
                child = futures[future]
                finish(child, future.result, echo)
                report(i, child)
        except (KeyboardInterrupt, SweepInterrupted):
            ignore_stop_signals()
            stopping.set()  # before the workers are asked to stop: none starts a child it was handed
            for process in list(getattr(pool, "_processes", {}).values()):  # those a plain `kill` did not reach
                if process.is_alive():
                    os.kill(process.pid, signal.SIGINT)
            pool.shutdown(wait=True, cancel_futures=True)
            raise SweepInterrupted(RESUME_HINT) from None
        finally:
            queue.put(None)
            drainer.join()
            plan.close()


def _cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
