"""``--executor ray``: a sweep's children as Ray tasks on a cluster, each started again on any
node when its worker dies (it resumes its run from the newest checkpoint in MLflow)."""

from __future__ import annotations

import os
from dataclasses import replace

from cgbench.errors import CgbenchError, ConfigError
from cgbench.sweep.child import ChildJob, finish, run_child, worker_init
from cgbench.sweep.plan import Child, ChildStatus
from cgbench.sweep.progress import PlanProgress
from cgbench.sweep.stopping import RESUME_HINT, SweepInterrupted, ignore_stop_signals

RAY_MAX_RETRIES = 3  # times a child whose Ray worker died is started again (it resumes from its checkpoint)


class RayExecutor:
    """A sweep's children as Ray tasks on a cluster: ``address`` names it (``auto``: the cluster
    this machine joined; None: a local one, started for the sweep and stopped after it). Each task
    runs :func:`~cgbench.sweep.child.run_child`, as the local pool's workers do, in the sweep's
    working directory, and asks for the child's needs: ``threads`` CPUs (the config's ``threads``,
    else the cores here divided by ``jobs``) and one GPU when the child trains on CUDA. A task whose
    worker dies is started again (:data:`RAY_MAX_RETRIES` times), on any node: it resumes the
    child's run from its newest checkpoint in MLflow, so the store and the data must be reachable
    by the same URI and path from every node (a tracking server, a shared folder)."""

    def __init__(self, jobs: int, address: str | None):
        self.jobs, self.address = jobs, address

    def threads(self) -> int:
        """The CPUs each task asks for (unless the config sets ``threads``) and its torch threads."""
        return max(1, (os.cpu_count() or 1) // self.jobs)

    def run(self, todo: list[Child], job: ChildJob, plan: PlanProgress, report, echo) -> None:
        import ray

        from cgbench.stores import resolve_uri

        started_here = self._connect(ray)
        try:
            job = replace(job, tracking_uri=resolve_uri(job.tracking_uri))  # the workers' environment differs
            task = ray.remote(_ray_child)
            refs = {task.options(num_cpus=child.config.threads or job.threads, num_gpus=self._gpus(ray, child),
                                 max_retries=RAY_MAX_RETRIES, retry_exceptions=False, name=f"cgbench {child.label}")
                    .remote(os.getcwd(), child, job): child for child in todo}
            plan.write(f"Running {len(todo)} runs as Ray tasks ({job.threads} CPUs each, cluster of "
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
                finish(refs[ref], lambda: _ray_result(ray, ref), echo)
                report(i, refs[ref])
        except (KeyboardInterrupt, SweepInterrupted):
            ignore_stop_signals()
            for ref in pending:
                ray.cancel(ref)
            ray.wait(pending, num_returns=len(pending), timeout=60)
            raise SweepInterrupted(RESUME_HINT) from None


def _ray_child(cwd: str, child: Child, job: ChildJob) -> tuple[str, ChildStatus, float]:
    """A Ray task: :func:`~cgbench.sweep.child.run_child` in the sweep's working directory
    (relative paths in the config mean the same there), without a progress display."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    worker_init()
    return run_child(child, job, _no_progress)


def _no_progress(label: str, iteration: int, total: int) -> None:
    pass


def _ray_result(ray, ref) -> tuple[str, ChildStatus, float]:
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
