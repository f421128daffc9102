"""One child of a sweep wherever it runs (this process, a pool worker, a Ray task): what it is
given (:class:`ChildJob`), the GPU it takes, its training and evaluation, and its outcome."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from cgbench.errors import CgbenchError
from cgbench.protocol import Tags
from cgbench.sweep.coordination import refresh, wait_for_writer
from cgbench.sweep.plan import Child, ChildStatus
from cgbench.sweep.stopping import SweepInterrupted


@dataclass(frozen=True)
class ChildJob:
    """What every child of one sweep is given besides itself. It crosses process boundaries (to
    pool workers and Ray tasks), so it holds plain, picklable values only."""

    experiment: str
    parent_run_id: str
    tracking_uri: str | None
    evaluators: tuple[str, ...]
    fcn_run_id: str | None  # None when no evaluator needs an FCN
    preset: str
    threads: int  # torch threads of each child (0: torch's default); the CPUs a Ray task asks for


#: Children a sweep runs at once per GPU when ``--jobs`` is not given: one, as before. More can
#: share a GPU (``--jobs`` above the GPU count: :func:`gpu_slots`); ``cgbench bench --share N``
#: measures the aggregate throughput that is to set this default (docs/speed.md). Not measured yet.
CHILDREN_PER_GPU = 1


def default_jobs(gpu_count: int) -> int:
    """``--jobs`` when not given: :data:`CHILDREN_PER_GPU` per GPU, and one child without a GPU."""
    return max(1, CHILDREN_PER_GPU * gpu_count)


def gpu_slots(jobs: int, gpu_count: int) -> list[int]:
    """The GPUs that ``jobs`` concurrent children take, one slot each: every child its own GPU
    while there are enough, then round robin. Empty (no placement: every child uses the
    default device, as before) with one job or fewer than two GPUs."""
    if jobs < 2 or gpu_count < 2:
        return []
    return [i % gpu_count for i in range(jobs)]


def placed_device(config_device: str, gpu: int) -> str | None:
    """The device a child runs on in GPU slot ``gpu``; None when its config pins a device
    (e.g. ``device=cpu`` or ``cuda:1``), which placement leaves alone."""
    return f"cuda:{gpu}" if config_device in ("auto", "cuda") else None


def run_child(child: Child, job: ChildJob, on_progress: Callable[[str, int, int], None],
              gpus=None) -> tuple[str, ChildStatus, float]:
    """Train (or resume) and evaluate one child; returns (run_id, status, seconds).

    ``gpus``: a queue of free GPU slots (see :func:`gpu_slots`), or None; the child holds a slot
    while it runs and puts it back when done.

    What is left to do is read again from the store first, so that a child started again (a Ray
    task rescheduled after its worker died) resumes the run its first attempt made."""
    refresh(child, job.parent_run_id, job.tracking_uri, job.evaluators)
    if not child.to_do:  # finished meanwhile (or failed)
        return child.run_id, child.status, 0.0
    if gpus is None or placed_device(child.config.device, 0) is None:
        return _train_and_evaluate(child, job, on_progress, None)
    gpu = gpus.get()
    try:
        return _train_and_evaluate(child, job, on_progress, placed_device(child.config.device, gpu))
    finally:
        gpus.put(gpu)


def _train_and_evaluate(child: Child, job: ChildJob, on_progress: Callable[[str, int, int], None],
                        device: str | None) -> tuple[str, ChildStatus, float]:
    import torch

    from cgbench.evaluate import evaluate
    from cgbench.training import train

    if job.threads:
        torch.set_num_threads(job.threads)
    start = time.perf_counter()
    quiet = (lambda *_: None)
    run_id = child.run_id
    resume = child.status == ChildStatus.RESUME
    if resume:
        wait_for_writer(job.tracking_uri, run_id)
    if child.status in (ChildStatus.PLANNED, ChildStatus.RESUME):
        result = train(
            None if resume else child.config, tracking_uri=job.tracking_uri, experiment=job.experiment,
            preset=job.preset, resume_run_id=run_id if resume else None, parent_run_id=job.parent_run_id,
            tags={Tags.SWEEP: job.parent_run_id, Tags.ROW: child.row.key},
            run_name=f"{child.row.key}-seed{child.seed}", progress=False, echo=quiet,
            on_progress=lambda it, total: on_progress(child.label, it, total), device=device,
        )
        run_id = result.run_id
    if job.evaluators:
        evaluate(run_id, list(job.evaluators), tracking_uri=job.tracking_uri, fcn=job.fcn_run_id, progress=False,
                 echo=quiet, device=device or "auto")
    return run_id, ChildStatus.FINISHED, time.perf_counter() - start


def worker_init() -> None:
    """A process that runs children keeps MLflow's INFO chatter out of the sweep's output."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def finish(child: Child, call: Callable[[], tuple[str, ChildStatus, float]], echo: Callable[[str], None]) -> None:
    """Record on ``child`` the outcome of ``call``, which runs it: a run that fails marks the child
    failed and the sweep goes on; an interrupted one stops the sweep (:class:`SweepInterrupted`)."""
    from cgbench.errors import Interrupted, NonFiniteLoss

    start = time.perf_counter()
    try:
        child.run_id, child.status, child.seconds = call()
    except (NonFiniteLoss, CgbenchError) as exc:
        child.status, child.seconds = ChildStatus.FAILED, time.perf_counter() - start
        echo(f"  {child.label} failed: {exc}")
    except Interrupted as exc:
        raise SweepInterrupted(
            f"sweep interrupted during {child.label} (run {exc.run_id} checkpointed at iteration {exc.iteration}); "
            "run the same command again to resume"
        ) from None
