"""Sweeps of one spec at once: they find one parent run, split its children and each waits for
the others'. Who does a child is decided by leases (:mod:`cgbench.tracking.leases`); where a child stands,
by what the store holds of it."""

from __future__ import annotations

import time
from typing import Any, Callable

from cgbench.tracking import Lease
from cgbench.protocol import SWEEP_METHOD
from cgbench.protocol import Tags
from cgbench.sweep.plan import Child, ChildStatus, Plan, sweep_key

WAIT_POLL_SECONDS = 2.0  # how often a sweep looks whether another sweep's children are done


def open_parent(plan: Plan, ref, jobs: int, tracking_uri: str | None, echo: Callable[[str], None]):
    """The sweep's parent run: found again by its key (spec, preset, seeds, data, overrides), else new."""
    from cgbench.tracking import RunTracker, client_for, search_runs

    spec, client = plan.spec, client_for(tracking_uri)
    key = sweep_key(spec, plan.preset, plan.seeds, plan.data, plan.sets)
    with Lease(client, f"sweep/{key}").hold(echo):  # two sweeps started at once make one parent
        existing = search_runs(client, [plan.experiment], f"tags.`{Tags.SWEEP_KEY}` = '{key}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
        if existing:
            parent = RunTracker.reopen(tracking_uri, existing[0].info.run_id)
            echo(f"Continuing sweep {spec.name!r}: parent run {parent.run_id} in experiment {plan.experiment!r}.")
            return parent
        return _new_parent(plan, ref, jobs, tracking_uri, key, echo)


def _new_parent(plan: Plan, ref, jobs: int, tracking_uri: str | None, key: str, echo: Callable[[str], None]):
    from cgbench.tracking import RunTracker

    spec = plan.spec
    parent = RunTracker.create(tracking_uri, plan.experiment, f"sweep-{spec.name}", {
        Tags.METHOD: SWEEP_METHOD, Tags.SWEEP_KEY: key, Tags.SPEC: spec.name,
        Tags.PRESET: plan.preset, Tags.DATASET: ref.name, Tags.SEEDS: ",".join(map(str, plan.seeds)),
        Tags.TABLES: ",".join(map(str, spec.tables)),
    })
    parent.log_params({"spec": spec.path, "preset": plan.preset, "seeds": list(plan.seeds), "data": plan.data,
                       "evaluators": list(spec.evaluators), "rows": [r.key for r in spec.rows], "jobs": jobs,
                       **{f"set.{k}": v for k, v in plan.sets.items()}})
    parent.log_file(spec.path)
    parent.log_environment()
    echo(f"Sweep {spec.name!r}: parent run {parent.run_id} in experiment {plan.experiment!r}.")
    return parent


def existing_children(client, parent_run_id: str) -> dict[tuple[str, int], Any]:
    """The runs of the sweep's children in the store, by (row, seed): the newest of each."""
    from cgbench.tracking import search_runs

    runs = search_runs(client, None, f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                       order_by=["attributes.start_time DESC"])
    found = {}
    for run in runs:
        key = (run.data.tags.get(Tags.ROW, ""), int(run.data.tags.get(Tags.SEED, -1)))
        found.setdefault(key, run)  # newest first
    return found


def classify(child: Child, run, eval_prefixes: list[str]) -> None:
    """What is left to do for a child, given its existing run (if any) and the metric prefixes
    its evaluators write."""
    if child.config is None:
        child.status = ChildStatus.UNAVAILABLE
        return
    if run is None:
        child.status = ChildStatus.PLANNED
        return
    child.run_id = run.info.run_id
    status = run.info.status
    if status == "FINISHED":
        done = all(any(k.startswith(prefix + "/") for k in run.data.metrics) for prefix in eval_prefixes)
        child.status = ChildStatus.FINISHED if done else ChildStatus.EVALUATE
    elif status == "FAILED":
        child.status = ChildStatus.FAILED
    else:  # RUNNING (killed hard) or KILLED (interrupted): continue from the last checkpoint
        child.status = ChildStatus.RESUME


def child_lease(client, parent_run_id: str, child: Child) -> Lease:
    """Who does a sweep's child: one sweep at a time (:mod:`cgbench.tracking.leases`)."""
    return Lease(client, f"child/{parent_run_id}/{child.row.key}/{child.seed}")


def claim_children(client, plan: Plan, parent_run_id: str, leases: dict[str, Lease]) -> list[Child]:
    """Take the lease of every runnable child that no other live sweep holds (into ``leases``, by
    label); returns the children another sweep holds."""
    elsewhere = []
    for child in plan.runnable:
        lease = child_lease(client, parent_run_id, child)
        if lease.try_acquire() is None:
            leases[child.label] = lease
        else:
            elsewhere.append(child)
    return elsewhere


def wait_for_others(client, parent_run_id: str, elsewhere: list[Child], leases: dict[str, Lease],
                     prefixes: list[str], do: Callable[[list[Child]], None], echo: Callable[[str], None]) -> None:
    """Wait for the children another sweep holds: each, once its lease is free (done, or its holder
    gone), is taken and finished here if anything is left to do."""
    pending = list(elsewhere)
    if pending:
        echo(f"Waiting for {len(pending)} run(s) another sweep is doing: "
             + ", ".join(c.label for c in pending) + " ...")
    while pending:
        for child in list(pending):
            lease = child_lease(client, parent_run_id, child)
            if lease.try_acquire() is not None:
                continue
            leases[child.label] = lease
            pending.remove(child)
            classify(child, existing_children(client, parent_run_id).get((child.row.key, child.seed)), prefixes)
            if child.to_do:
                do([child])
        if pending:
            time.sleep(WAIT_POLL_SECONDS)


def refresh(child: Child, parent_run_id: str, tracking_uri: str | None, evaluators: tuple[str, ...]) -> None:
    """The child's status as the store has it now (see :func:`classify`)."""
    from cgbench.plugins import discover

    from cgbench.tracking import client_for

    installed = discover()
    found = existing_children(client_for(tracking_uri), parent_run_id).get((child.row.key, child.seed))
    classify(child, found, [installed[name].key_prefix() for name in evaluators])


def wait_for_writer(tracking_uri: str | None, run_id: str) -> None:
    """Wait until no live process writes run ``run_id``: a writer that died on this machine is
    gone at once, one on another machine once its heartbeat is stale (:mod:`cgbench.tracking.leases`)."""
    from cgbench.tracking import client_for

    lease = Lease(client_for(tracking_uri), f"run/{run_id}")
    lease.wait()
    lease.release()  # taken only to know it is free: the training run takes it again
