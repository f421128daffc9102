"""A study's results: each method's fooled rate, written into its run as MLflow metrics.

Only completed sessions count (all 40 scored trials answered); practice trials never count. For each
participant, the fooled rate is the percentage of their scored trials in which they chose the
generated image; a method's ``fooled_rate`` is the mean over its participants, ``fooled_rate_sem``
the standard error of that mean (sample standard deviation, n − 1, over √n) and
``fooled_rate_participants`` their number n. With one participant there is no standard error: ``_sem``
is written as NaN (so no earlier value stays displayed), and the report shows the mean alone.

Metrics (percent, at the step of the checkpoint whose images were shown):
``study/<direction>/fooled_rate``, ``study/<direction>/fooled_rate_sem``,
``study/<direction>/fooled_rate_participants``; re-running replaces them (see
:meth:`cgbench.tracking.RunTracker.log_result_metrics`). The sessions behind them go into the run as
``study/<direction>/sessions.json`` (random participant ids, per-participant rates and answers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cgbench.errors import CgbenchError
from cgbench.study import PRACTICE_TRIALS, SCORED_TRIALS
from cgbench.study.store import DB_NAME, Session, Store, study_folder


@dataclass(frozen=True)
class MethodResult:
    run_id: str
    direction: str
    step: int
    sessions: tuple[Session, ...]

    @property
    def rates(self) -> list[float]:
        """Each participant's fooled rate, in percent."""
        return [100.0 * sum(s.chose_fake) / len(s.chose_fake) for s in self.sessions]

    @property
    def n(self) -> int:
        return len(self.sessions)

    @property
    def fooled_rate(self) -> float:
        return math.fsum(self.rates) / self.n

    @property
    def sem(self) -> float:
        """Standard error of the mean; NaN with fewer than 2 participants."""
        if self.n < 2:
            return math.nan
        mean = self.fooled_rate
        return math.sqrt(math.fsum((r - mean) ** 2 for r in self.rates) / (self.n - 1) / self.n)

    def metrics(self) -> dict[str, float]:
        prefix = f"study/{self.direction}/fooled_rate"
        return {prefix: self.fooled_rate, f"{prefix}_sem": self.sem, f"{prefix}_participants": float(self.n)}


def method_results(store: Store, direction: str) -> list[MethodResult]:
    """One result per run with completed sessions in ``direction``, in the order first completed."""
    by_run: dict[str, list[Session]] = {}
    for session in store.completed_sessions(direction):
        by_run.setdefault(session.participant.run_id, []).append(session)
    out = []
    for run_id, sessions in by_run.items():
        steps = {s.participant.step for s in sessions}
        if len(steps) > 1:
            raise CgbenchError(f"run {run_id}'s sessions saw images of different checkpoints (steps "
                               f"{sorted(steps)}); a method's sessions must see the same images")
        out.append(MethodResult(run_id, direction, steps.pop(), tuple(sessions)))
    return out


def record_results(results: Sequence[MethodResult], tracking_uri: str | None) -> None:
    """Write each method's metrics and sessions into its run."""
    from cgbench.tracking import RunTracker, client_for, get_run

    client = client_for(tracking_uri)
    for result in results:
        get_run(client, result.run_id)
        tracker = RunTracker(client, result.run_id)
        tracker.log_result_metrics(result.metrics(), result.step)
        tracker.log_json({
            "direction": result.direction, "step": result.step, "protocol": {
                "practice_trials": PRACTICE_TRIALS, "scored_trials": SCORED_TRIALS, "completed_sessions_only": True},
            "fooled_rate": result.fooled_rate, "fooled_rate_sem": None if result.n < 2 else result.sem,
            "participants": [{"id": s.participant.id, "fooled_rate": rate, "chose_generated": list(s.chose_fake)}
                             for s, rate in zip(result.sessions, result.rates)],
        }, f"study/{result.direction}/sessions.json")


def study_results(direction: str = "labels2photo", tracking_uri: str | None = None,
                  study_dir: str | Path | None = None) -> list[MethodResult]:
    """Compute the fooled rates of a study's completed sessions and record them in the runs."""
    folder = study_folder(study_dir, tracking_uri)
    if not (folder / DB_NAME).is_file():
        raise CgbenchError(f"no study database {folder / DB_NAME}; serve a study first (cgbench study serve --run "
                           "RUN_ID ...) or pass --study-dir DIR")
    results = method_results(Store(folder / DB_NAME), direction)
    if not results:
        raise CgbenchError(f"no completed {direction} sessions in {folder / DB_NAME} yet; each participant must "
                           f"answer all {PRACTICE_TRIALS + SCORED_TRIALS} trials to count")
    record_results(results, tracking_uri)
    return results
