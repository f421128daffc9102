"""Running a sweep: the rows of a paper table × seeds, trained and evaluated as children of one
MLflow run (the spec: :mod:`cgbench.sweep.spec`).

Running a sweep creates (or finds again) one parent run per (spec, preset, seeds, data, overrides),
trains the FCN evaluator once per dataset (or reuses the one found by tag), and for every
(row, seed) trains a child run and evaluates it. Running the same command again skips finished
children, evaluates trained but unevaluated ones, and resumes interrupted ones from their last
checkpoint. ``jobs`` > 1 runs children in parallel processes, splitting the cores between them;
when several CUDA GPUs are visible, each child in flight takes a GPU of its own
(:func:`~cgbench.sweep.child.gpu_slots`).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cgbench.durations import fmt_seconds
from cgbench.tracking import Lease
from cgbench.protocol import Tags
from cgbench.sweep.child import ChildJob
from cgbench.sweep.coordination import claim_children, classify, existing_children, open_parent, wait_for_others
from cgbench.sweep.executors import execute, make_executor
from cgbench.sweep.plan import Child, ChildStatus, Plan, make_plan, print_plan, resolve_data
from cgbench.sweep.stopping import SweepInterrupted, ignore_stop_signals, sigterm_as_interrupt


@dataclass
class SweepResult:
    """What a sweep did: its parent run (None for ``--dry-run``), its children and where each
    stands, the FCN it scored with, and how long it took."""

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
    rows) is done by one of them (:mod:`cgbench.tracking.leases`); each waits for the others' to finish.
    SIGTERM stops a sweep as Ctrl-C does; the parent run is then marked KILLED.

    ``executor_name``: ``local`` (processes here, ``jobs`` at a time) or ``ray`` (Ray tasks on the
    cluster at ``ray_address``; see :class:`~cgbench.sweep.ray_executor.RayExecutor`)."""
    started = time.perf_counter()
    plan = make_plan(spec_path, seeds, jobs, preset, data, sets, experiment)
    executor = make_executor(executor_name, jobs, ray_address)
    if dry_run:
        print_plan(plan, jobs, echo)
        return SweepResult(None, plan.experiment, plan.children, None, 0.0)
    ref = resolve_data(plan, echo)  # every row's data, before anything is recorded
    with sigterm_as_interrupt():
        parent = open_parent(plan, ref, jobs, tracking_uri, echo)
        try:
            fcn_run_id = _run_children(plan, parent, executor, tracking_uri, progress, echo)
        except BaseException as exc:
            ignore_stop_signals()  # recording the parent's status must not be cut short
            from cgbench.errors import StoreUnavailable

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
         "Tables: " + shlex.join(["cgbench", "report", "--sweep", parent.run_id,
                                  *(["--tracking-uri", tracking_uri] if tracking_uri else [])]))
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

        job = ChildJob(plan.experiment, parent.run_id, tracking_uri, plan.spec.evaluators, fcn_run_id, plan.preset,
                       executor.threads())

        def do(children: list[Child]) -> None:
            execute(children, job, executor, progress, echo)

        do(todo)
        wait_for_others(client, parent.run_id, elsewhere, leases, prefixes, do, echo)
    finally:
        for lease in leases.values():
            lease.release()
    return fcn_run_id


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
        parent.set_tags({Tags.FCN_RUN: fcn_run_id})
    prepare_floor(config, plan.spec.evaluators, fcn_run_id, tracking_uri, plan.experiment, echo)
    return fcn_run_id
