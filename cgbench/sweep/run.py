"""Running a sweep: the rows of a paper table × seeds, trained and evaluated as children of one
MLflow run (the spec: :mod:`cgbench.sweep.spec`).

Running a sweep creates (or finds again) one parent run per (spec, preset, seeds, data, overrides),
trains the FCN evaluator once per dataset (or reuses the one found by tag), and for every
(row, seed) trains a child run and evaluates it. Running the same command again skips finished
children, evaluates trained but unevaluated ones, and resumes interrupted ones from their last
checkpoint. ``jobs`` > 1 runs children in parallel processes, splitting the cores between them;
when several CUDA GPUs are visible, each child in flight takes a GPU of its own
(:func:`gpu_slots`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator

from cgbench.durations import fmt_seconds
from cgbench.errors import CgbenchError, ConfigError
from cgbench.leases import Lease
from cgbench.protocol import TAG_PREFIX as TAG
from cgbench.sweep.coordination import (claim_children, classify, existing_children, open_parent, refresh,
                                       wait_for_others, wait_for_writer)
from cgbench.sweep.plan import Child, ChildStatus, Plan, make_plan, print_plan
from cgbench.sweep.progress import PlanProgress, QueueProgress, drain

# --- one child, in this process or a worker ---------------------------------------------


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


def _run_child(child: Child, experiment: str, parent_run_id: str, tracking_uri: str | None, evaluators: tuple[str, ...],
               fcn_run_id: str | None, preset: str, threads: int, on_progress: Callable[[str, int, int], None],
               gpus=None) -> tuple[str, str, float]:
    """Train (or resume) and evaluate one child; returns (run_id, status, seconds).

    ``gpus``: a queue of free GPU slots (see :func:`gpu_slots`), or None; the child holds a slot
    while it runs and puts it back when done.

    What is left to do is read again from the store first, so that a child started again (a Ray
    task rescheduled after its worker died) resumes the run its first attempt made."""
    refresh(child, parent_run_id, tracking_uri, evaluators)
    if not child.to_do:  # finished meanwhile (or failed)
        return child.run_id, child.status, 0.0
    if gpus is None or placed_device(child.config.device, 0) is None:
        return _train_and_evaluate(child, experiment, parent_run_id, tracking_uri, evaluators, fcn_run_id, preset,
                                   threads, on_progress, None)
    gpu = gpus.get()
    try:
        return _train_and_evaluate(child, experiment, parent_run_id, tracking_uri, evaluators, fcn_run_id, preset,
                                   threads, on_progress, placed_device(child.config.device, gpu))
    finally:
        gpus.put(gpu)


def _train_and_evaluate(child: Child, experiment: str, parent_run_id: str, tracking_uri: str | None,
                        evaluators: tuple[str, ...], fcn_run_id: str | None, preset: str, threads: int,
                        on_progress: Callable[[str, int, int], None], device: str | None) -> tuple[str, str, float]:
    import torch

    from cgbench.evaluate import evaluate
    from cgbench.train import train

    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    quiet = (lambda *_: None)
    run_id = child.run_id
    if child.status == ChildStatus.RESUME:
        wait_for_writer(tracking_uri, run_id)
    if child.status in (ChildStatus.PLANNED, ChildStatus.RESUME):
        result = train(
            child.config if child.status == ChildStatus.PLANNED else None, tracking_uri=tracking_uri, experiment=experiment,
            preset=preset, resume_run_id=run_id if child.status == ChildStatus.RESUME else None, parent_run_id=parent_run_id,
            tags={TAG + "sweep": parent_run_id, TAG + "row": child.row.key},
            run_name=f"{child.row.key}-seed{child.seed}", progress=False, echo=quiet,
            on_progress=lambda it, total: on_progress(child.label, it, total), device=device,
        )
        run_id = result.run_id
    if evaluators:
        evaluate(run_id, list(evaluators), tracking_uri=tracking_uri, fcn=fcn_run_id, progress=False, echo=quiet,
                 device=device or "auto")
    return run_id, ChildStatus.FINISHED, time.perf_counter() - start


def _worker_init() -> None:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


_SWEEP_STOPPING = None
"""In a pool worker: the sweep's event, set once the sweep is stopping (see :func:`_pool_child`)."""


def _pool_worker_init(stopping) -> None:
    """A pool worker leaves Ctrl-C to the sweep while it waits for work (a KeyboardInterrupt in an
    idle worker would print a traceback, and a second one would cut its exit short); it takes
    Ctrl-C only while it works on a child (:func:`_pool_child`)."""
    global _SWEEP_STOPPING
    _worker_init()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _SWEEP_STOPPING = stopping


def _pool_child(*args) -> tuple[str, str, float]:
    """:func:`_run_child` in a pool worker, stopped by Ctrl-C (a training run checkpoints and is
    marked KILLED, evaluation stops), the worker idle again afterwards. A child that the pool had
    already handed to a worker when the sweep began to stop is never started."""
    if _SWEEP_STOPPING is not None and _SWEEP_STOPPING.is_set():
        return "", ChildStatus.NOT_STARTED, 0.0
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run_child(*args)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# --- the sweep ------------------------------------------------------------------------


class SweepInterrupted(Exception):
    """Ctrl-C or SIGTERM during a sweep: runs in flight were checkpointed; the same command resumes."""

    run_status = "KILLED"


@dataclass
class SweepResult:
    parent_run_id: str | None
    experiment: str
    children: list[Child]
    fcn_run_id: str | None
    seconds: float

    @property
    def failed(self) -> list[Child]:
        return [c for c in self.children if c.status == ChildStatus.FAILED]


def run_sweep(
    spec_path: str | Path,
    seeds: tuple[int, ...] | None = None,
    jobs: int = 1,
    preset: str | None = None,
    data: str | None = None,
    sets: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    dry_run: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    executor_name: str = "local",
    ray_address: str | None = None,
) -> SweepResult:
    """Train and evaluate every (row, seed) of the spec as children of one parent run; the same
    command again skips what is finished and resumes what was interrupted. Sweeps of the same spec
    running at once share the parent and split the children: each child (and the FCN, and the null
    rows) is done by one of them (:mod:`cgbench.leases`); each waits for the others' to finish.
    SIGTERM stops a sweep as Ctrl-C does; the parent run is then marked KILLED.

    ``executor_name``: ``local`` (processes here, ``jobs`` at a time) or ``ray`` (Ray tasks on the
    cluster at ``ray_address``; see :class:`RayExecutor`)."""
    started = time.perf_counter()
    plan = make_plan(spec_path, seeds, jobs, preset, data, sets, experiment)
    executor = make_executor(executor_name, jobs, ray_address)
    if dry_run:
        print_plan(plan, jobs, echo)
        return SweepResult(None, plan.experiment, plan.children, None, 0.0)
    from cgbench.data import datasets

    ref = datasets.resolve(plan.data, plan.image_size, echo=echo)  # before anything is recorded
    with _sigterm_as_interrupt():
        parent = open_parent(plan, ref, jobs, tracking_uri, echo)
        try:
            fcn_run_id = _run_children(plan, parent, executor, tracking_uri, progress, echo)
        except BaseException as exc:
            _ignore_stop_signals()  # recording the parent's status must not be cut short
            from cgbench.tracking import StoreUnavailable

            status = "KILLED" if isinstance(exc, (KeyboardInterrupt, SweepInterrupted)) else "FAILED"
            if isinstance(exc, StoreUnavailable):  # the store is away: do not wait for it again
                parent.end_if_reachable(status)
            else:
                parent.end(status)
            raise
    children = plan.children
    failed = [c for c in children if c.status == ChildStatus.FAILED]
    parent.end("FAILED" if failed else "FINISHED")
    seconds = time.perf_counter() - started
    echo(f"Sweep {plan.spec.name!r} done in {fmt_seconds(seconds)}: "
         f"{sum(c.status == ChildStatus.FINISHED for c in children)} finished, {len(failed)} failed. "
         f"Tables: cgbench report --sweep {parent.run_id}" + (f" --tracking-uri {tracking_uri}" if tracking_uri else ""))
    return SweepResult(parent.run_id, plan.experiment, children, fcn_run_id, seconds)


def _run_children(plan: Plan, parent, executor, tracking_uri: str | None, progress: bool,
                  echo: Callable[[str], None]) -> str | None:
    """Claim the children no other sweep holds, prepare the scoring, do the claimed children, then
    wait for the others'; returns the FCN's run id."""
    from cgbench.tracking import client_for

    client = client_for(tracking_uri)
    leases: dict[str, Lease] = {}
    try:
        elsewhere = claim_children(client, plan, parent.run_id, leases)
        found = existing_children(client, parent.run_id)
        prefixes = [plan.installed[name].key_prefix() for name in plan.spec.evaluators]
        for child in plan.children:
            classify(child, found.get((child.row.key, child.seed)), prefixes)
            if child in elsewhere:
                child.status = ChildStatus.ELSEWHERE
        fcn_run_id = prepare_scoring(plan, parent, tracking_uri, progress, echo)
        todo = [c for c in plan.children if c.to_do]
        counts = {s: sum(c.status == s for c in plan.children) for s in ChildStatus}
        echo(f"Plan: {len(plan.children)} runs ({len(plan.spec.rows)} rows x {len(plan.seeds)} seeds): {len(todo)} "
             f"to do, {counts[ChildStatus.FINISHED]} already finished, {counts[ChildStatus.FAILED]} failed before "
             f"(delete them to retry), {counts[ChildStatus.UNAVAILABLE]} not available, "
             f"{counts[ChildStatus.ELSEWHERE]} being done by another sweep.")

        def do(children: list[Child]) -> None:
            _execute(children, plan.experiment, parent.run_id, tracking_uri, plan.spec.evaluators, fcn_run_id,
                     plan.preset, executor, progress, echo)

        do(todo)
        wait_for_others(client, parent.run_id, elsewhere, leases, prefixes, do, echo)
    finally:
        for lease in leases.values():
            lease.release()
    return fcn_run_id


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a sweep as Ctrl-C does (in the main thread; elsewhere signals are left alone)."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ignore_stop_signals() -> None:
    """Once a sweep is stopping, more Ctrl-C or SIGTERM must not cut the stop short (and the
    sweep's manager process, which the sweep itself shuts down, ignores both from its start)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass


def prepare_scoring(plan: Plan, parent, tracking_uri: str | None, progress: bool,
                    echo: Callable[[str], None]) -> str | None:
    """The FCN evaluator (found again, else trained once) and the null rows (the floor) for the
    sweep's data and image size; returns the FCN's run id when the evaluators need one."""
    from cgbench.fcn import ensure_fcn
    from cgbench.nulls import prepare_floor

    if not plan.runnable:
        return None
    config = plan.runnable[0].config
    fcn_run_id = None
    if any("fcn" in plan.installed[e].needs for e in plan.spec.evaluators):
        fcn_run_id = ensure_fcn(config, tracking_uri, plan.experiment, plan.preset, progress, echo)
        parent.set_tags({TAG + "fcn_run": fcn_run_id})
    prepare_floor(config, plan.spec.evaluators, fcn_run_id, tracking_uri, plan.experiment, echo)
    return fcn_run_id


def _execute(todo: list[Child], experiment: str, parent_run_id: str, tracking_uri: str | None,
             evaluators: tuple[str, ...], fcn_run_id: str | None, preset: str, executor, progress: bool,
             echo: Callable[[str], None]) -> None:
    if not todo:
        return
    jobs, threads = executor.jobs, executor.threads()
    done_seconds: list[float] = []
    started = time.perf_counter()
    plan = PlanProgress(todo, progress)

    def report(i: int, child: Child) -> None:
        plan.finished(child.label)
        done_seconds.append(child.seconds)
        left = len(todo) - i
        eta = sum(done_seconds) / len(done_seconds) * left / jobs
        state = "done" if child.status == ChildStatus.FINISHED else "FAILED"
        plan.write(f"[{i}/{len(todo)}] {child.label}: {state} in {fmt_seconds(child.seconds)} (run {child.run_id}); "
                   f"elapsed {fmt_seconds(time.perf_counter() - started)}, about {fmt_seconds(eta)} left", echo)

    args = (experiment, parent_run_id, tracking_uri, evaluators, fcn_run_id, preset, threads)
    executor.run(todo, args, plan, report, echo)


class LocalExecutor:
    """A sweep's children as processes on this machine: one after the other in this process
    (``jobs`` 1), else in a pool of ``jobs`` worker processes."""

    def __init__(self, jobs: int):
        self.jobs = jobs

    def threads(self) -> int:
        """The torch threads of each child: the cores shared between the jobs (0: torch's default)."""
        return max(1, (os.cpu_count() or 1) // self.jobs) if self.jobs > 1 else 0

    def run(self, todo: list[Child], args: tuple, plan: PlanProgress, report, echo) -> None:
        if self.jobs > 1:
            _execute_in_pool(todo, args, self.jobs, plan, report, echo)
            return
        try:
            for i, child in enumerate(todo, 1):
                what = "training and evaluating" if child.status != ChildStatus.EVALUATE else "evaluating"
                plan.write(f"[{i}/{len(todo)}] {child.label}: {what} ...", echo)
                _finish(child, lambda: _run_child(child, *args, plan.update), echo)
                report(i, child)
        finally:
            plan.close()


EXECUTORS = ("local", "ray")
RAY_MAX_RETRIES = 3  # times a child whose Ray worker died is started again (it resumes from its checkpoint)


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


class RayExecutor:
    """A sweep's children as Ray tasks on a cluster: ``address`` names it (``auto``: the cluster
    this machine joined; None: a local one, started for the sweep and stopped after it). Each task
    runs :func:`_run_child`, the local pool's child entry, in the sweep's working directory, and
    asks for the child's needs: ``threads`` CPUs (the config's ``threads``, else the cores here
    divided by ``jobs``) and one GPU when the child trains on CUDA. A task whose worker dies is
    started again (:data:`RAY_MAX_RETRIES` times), on any node: it resumes the child's run from its
    newest checkpoint in MLflow, so the store and the data must be reachable by the same URI and
    path from every node (a tracking server, a shared folder)."""

    def __init__(self, jobs: int, address: str | None):
        self.jobs, self.address = jobs, address

    def threads(self) -> int:
        """The CPUs each task asks for (unless the config sets ``threads``) and its torch threads."""
        return max(1, (os.cpu_count() or 1) // self.jobs)

    def run(self, todo: list[Child], args: tuple, plan: PlanProgress, report, echo) -> None:
        import ray

        from cgbench.stores import resolve_uri

        started_here = self._connect(ray)
        try:
            experiment, parent_run_id, tracking_uri, *rest = args
            args = (experiment, parent_run_id, resolve_uri(tracking_uri), *rest)  # the workers' environment differs
            task = ray.remote(_ray_child)
            refs = {task.options(num_cpus=child.config.threads or args[-1], num_gpus=self._gpus(ray, child),
                                 max_retries=RAY_MAX_RETRIES, retry_exceptions=False, name=f"cgbench {child.label}")
                    .remote(os.getcwd(), child, *args): child for child in todo}
            plan.write(f"Running {len(todo)} runs as Ray tasks ({args[-1]} CPUs each, cluster of "
                       f"{ray.cluster_resources().get('CPU', 0):g} CPUs) ...", echo)
            self._collect(ray, refs, report, echo)
        finally:
            plan.close()
            if started_here:
                ray.shutdown()

    def _connect(self, ray) -> bool:
        """Join the cluster (start a local one when no address was given); True when this call started it."""
        if ray.is_initialized():
            return False
        try:
            if self.address is None:
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level="WARNING")
                return True
            ray.init(address=self.address, logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"no Ray cluster at --ray-address {self.address} ({_first_line(exc)}); start one with "
                              "`ray start --head`, or drop --ray-address for a local one") from None
        return False

    @staticmethod
    def _gpus(ray, child: Child) -> int:
        device = child.config.device
        if device.startswith("cuda"):
            return 1
        return 1 if device == "auto" and ray.cluster_resources().get("GPU", 0) >= 1 else 0

    @staticmethod
    def _collect(ray, refs: dict, report, echo) -> None:
        """Each child as its task ends; Ctrl-C or SIGTERM cancels the tasks in flight (a training
        run checkpoints and is marked KILLED) and raises :class:`SweepInterrupted`."""
        pending = list(refs)
        try:
            for i in range(1, len(refs) + 1):
                (ref,), pending = ray.wait(pending, num_returns=1)
                _finish(refs[ref], lambda: _ray_result(ray, ref), echo)
                report(i, refs[ref])
        except (KeyboardInterrupt, SweepInterrupted):
            _ignore_stop_signals()
            for ref in pending:
                ray.cancel(ref)
            ray.wait(pending, num_returns=len(pending), timeout=60)
            raise SweepInterrupted("sweep interrupted; runs in flight were checkpointed; run the same command "
                                   "again to resume") from None


def _ray_child(cwd: str, child: Child, *args):
    """A Ray task: :func:`_run_child` in the sweep's working directory (relative paths in the
    config mean the same there), without a progress display."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    _worker_init()
    return _run_child(child, *args, _no_progress)


def _no_progress(label: str, iteration: int, total: int) -> None:
    pass


def _ray_result(ray, ref) -> tuple[str, str, float]:
    """A task's result; its child's own error as raised in the child (e.g. a failed run)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        raise exc.cause from None
    except ray.exceptions.RayError as exc:  # its worker died more often than it was retried
        raise CgbenchError(f"its Ray worker died {RAY_MAX_RETRIES + 1} times ({type(exc).__name__}); run the same "
                           "command again to resume it") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _execute_in_pool(todo: list[Child], args: tuple, jobs: int, plan: PlanProgress, report, echo) -> None:
    """The children in ``jobs`` worker processes. Ctrl-C or SIGTERM: every worker is asked to stop
    (SIGINT: a training run checkpoints and is marked KILLED; evaluation stops), no child not yet
    started starts, the sweep waits for them, ignoring more signals meanwhile, and raises
    :class:`SweepInterrupted`."""
    import threading
    from multiprocessing.managers import SyncManager

    context = get_context("spawn")
    stopping = context.Event()
    manager = SyncManager(ctx=context)
    manager.start(_ignore_stop_signals)  # the progress queue outlives a Ctrl-C or SIGTERM to the process group
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
        futures = {pool.submit(_pool_child, child, *args, QueueProgress(queue), gpus): child for child in todo}
        plan.write(f"Running {len(todo)} runs in {jobs} processes ({args[-1]} threads each"
                   + (f", on {len(set(slots))} GPUs" if slots else "") + ") ...", echo)
        try:
            for i, future in enumerate(as_completed(futures), 1):
                child = futures[future]
                _finish(child, future.result, echo)
                report(i, child)
        except (KeyboardInterrupt, SweepInterrupted):
            _ignore_stop_signals()
            stopping.set()  # before the workers are asked to stop: none starts a child it was handed
            for process in list(getattr(pool, "_processes", {}).values()):  # those a plain `kill` did not reach
                if process.is_alive():
                    os.kill(process.pid, signal.SIGINT)
            pool.shutdown(wait=True, cancel_futures=True)
            raise SweepInterrupted("sweep interrupted; runs in flight were checkpointed; run the same command "
                                   "again to resume") from None
        finally:
            queue.put(None)
            drainer.join()
            plan.close()


def _cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _finish(child: Child, call: Callable[[], tuple[str, str, float]], echo: Callable[[str], None]) -> None:
    from cgbench.train import Interrupted, NonFiniteLoss

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
