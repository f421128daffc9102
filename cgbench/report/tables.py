"""The paper's tables filled with our runs: pure data, no MLflow, no I/O.

* :class:`RunRecord`: one finished, evaluated run, as the report needs it.
* :func:`fill_table`: one :class:`~cgbench.report.paper.PaperTable` with our runs' numbers beside
  the published ones; each row compared with full CycleGAN (:func:`~cgbench.report.aggregate.compare`:
  paired over shared seeds, Welch otherwise) and with the floor (each run against the best null row
  scored by the same FCN, paired).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from cgbench.protocol import (
    DISTANCE_METRICS, NULL_ROW_NAMES, NULL_ROWS, RANKED_DISTANCES, Tags, metric_key,
)
from cgbench.report.aggregate import ALPHA, Comparison, Stat, aggregate, compare, paired, significant
from cgbench.report.paper import (
    GROUND_TRUTH, GROUND_TRUTH_NAME, METRICS, REFERENCE_ROW, PaperRow, PaperTable, setting_departures,
)

#: The tag naming the FCN that scored a run's labels→photo scores ("run <id>" or a file).
FCN_TAG = Tags.eval_fcn("fcn")


@dataclass(frozen=True)
class RunRecord:
    """One finished, evaluated training run, as the report needs it."""

    run_id: str
    name: str
    row: str
    seed: str  # "" for a run scored from images or a checkpoint made elsewhere
    metrics: Mapping[str, float]  # full MLflow keys, e.g. eval/labels2photo/class_iou
    tags: Mapping[str, str] = field(default_factory=dict)
    dataset: str = ""
    digest: str = ""
    preset: str = ""
    image_size: str = ""
    params: Mapping[str, str] = field(default_factory=dict)  # the run's config, as MLflow params

    @property
    def random_features(self) -> bool:
        return self.tags.get(Tags.FEATURE_WEIGHTS) == "random"

    def scored_by(self, direction: str) -> str:
        """The evaluator FCN that scored ``direction`` ("" where none did: photo→labels is scored
        by nearest colour, without an FCN; or the run predates the tag)."""
        return self.tags.get(FCN_TAG, "") if direction == "labels2photo" else ""

    def scores(self, direction: str) -> dict[str, float] | None:
        """The three scores of ``direction``, or None when the run was not scored that way."""
        keys = {m: metric_key(direction, m) for m in METRICS}
        if not all(k in self.metrics for k in keys.values()):
            return None
        return {m: float(self.metrics[k]) for m, k in keys.items()}

    def distances(self, direction: str) -> dict[str, float]:
        """The distances of ``direction`` the run was scored with (FID, KID, FD-FCN; maybe none)."""
        keys = {m: metric_key(direction, m) for m in DISTANCE_METRICS}
        return {m: float(self.metrics[k]) for m, k in keys.items() if k in self.metrics}


@dataclass
class RowResult:
    key: str
    name: str
    published: tuple[float, float, float] | None
    flag: str | None = None
    upper_bound: bool = False
    extra: bool = False  # not a row of the paper's table
    ceiling: bool = False  # the FCN's ground-truth row
    null: bool = False  # a null translator's row (the floor)
    stats: dict[str, Stat] = field(default_factory=dict)  # the three scores, and the distances the runs have
    values: dict[str, list[float]] = field(default_factory=dict)  # the three scores: one per run, in runs' order
    vs_reference: dict[str, Comparison] = field(default_factory=dict)  # row − CycleGAN; empty: not compared
    runs: list[RunRecord] = field(default_factory=list)
    best: set[str] = field(default_factory=set)
    random_features: bool = False
    vs_floor: dict[str, Comparison] = field(default_factory=dict)  # row − floor of its FCN; empty: no floor

    @property
    def p(self) -> dict[str, float | None]:
        """Two-sided p against CycleGAN, of the test used, per metric (empty: not compared)."""
        return {m: c.p for m, c in self.vs_reference.items()}

    @property
    def floor_p(self) -> dict[str, float | None]:
        """One-sided p that the row is above the floor, per metric (empty: no floor)."""
        return {m: c.p_greater for m, c in self.vs_floor.items()}

    def clears_floor(self, metric: str, alpha: float = ALPHA) -> bool | None:
        """Whether the row's seed mean is above the floor (one-sided p < alpha, n >= 2); None when
        there is no floor to clear or the row is a reference row itself."""
        if metric not in self.vs_floor:
            return None
        return significant(self.floor_p[metric], alpha)

    def pairs(self, metric: str) -> list[tuple[str, float]]:
        """(seed, value) of each run, for a paired comparison."""
        return [(run.seed, value) for run, value in zip(self.runs, self.values[metric])]

    @property
    def n(self) -> int:
        return max((s.n for s in self.stats.values()), default=0)

    @property
    def is_reference(self) -> bool:
        return self.key == REFERENCE_ROW and not self.ceiling

    def published_value(self, metric: str) -> float | None:
        if self.published is None or metric not in METRICS:  # the paper published no distances
            return None
        return self.published[METRICS.index(metric)]


@dataclass
class TableResult:
    table: PaperTable
    rows: list[RowResult]
    ground_truth: RowResult | None = None
    nulls: list[RowResult] = field(default_factory=list)  # the floor's rows, in NULL_ROWS order
    seeds: list[str] = field(default_factory=list)
    ladder: str = ""  # a sentence on the evaluator FCN's degradation ladder (labels→photo tables)
    dataset: str = ""
    digest: str = ""
    preset: str = ""
    setting: str = ""  # where the trained runs' setting departs from the paper's (one sentence)
    alpha: float = ALPHA
    floors: dict[str, dict[str, float]] = field(default_factory=dict)  # FCN → metric → best null value

    @property
    def number(self) -> int:
        return self.table.number

    @property
    def all_rows(self) -> list[RowResult]:
        return self.rows + self.nulls + ([self.ground_truth] if self.ground_truth is not None else [])

    @property
    def reference(self) -> RowResult | None:
        return next((r for r in self.rows if r.is_reference), None)

    def floor(self, metric: str) -> float:
        """The best null row's value of ``metric`` (NaN when no null row was recorded)."""
        values = [r.stats[metric].mean for r in self.nulls if r.stats[metric].n]
        return max(values) if values else math.nan

    def ceiling(self, metric: str) -> float:
        """Real photos through the FCN (labels→photo); a perfect label map scores 1 (photo→labels)."""
        if self.ground_truth is None:
            return 1.0
        return self.ground_truth.stats[metric].mean if self.ground_truth.stats[metric].n else math.nan

    @property
    def n_runs(self) -> int:
        return sum(len(r.runs) for r in self.rows)

    @property
    def distances(self) -> list[str]:
        """The distances (:data:`~cgbench.protocol.DISTANCE_METRICS`) some row of the table has."""
        return [m for m in DISTANCE_METRICS if any(m in r.stats and r.stats[m].n for r in self.all_rows)]


def _seed_key(seed: str):
    return (0, int(seed), "") if seed.lstrip("-").isdigit() else (1, 0, seed)


def _fill_row(paper_row: PaperRow, runs: list[RunRecord], direction: str, extra: bool = False,
              null: bool = False) -> RowResult:
    row = RowResult(paper_row.key, paper_row.name, paper_row.published, paper_row.flag, paper_row.upper_bound,
                    extra=extra, null=null)
    scored = [(r, s) for r in runs if (s := r.scores(direction)) is not None]
    scored.sort(key=lambda rs: _seed_key(rs[0].seed))
    row.runs = [r for r, _ in scored]
    row.values = {m: [s[m] for _, s in scored] for m in METRICS}
    for m in DISTANCE_METRICS:
        if values := [d[m] for r, _ in scored if m in (d := r.distances(direction))]:
            row.values[m] = values
    row.stats = {m: aggregate(values) for m, values in row.values.items()}
    row.random_features = any(r.random_features for r in row.runs)
    return row


def _mark_best(rows: list[RowResult]) -> None:
    """Bold: the best mean per column among the unpaired rows (higher scores, lower distances)."""
    contenders = [r for r in rows if not r.upper_bound and r.n > 0]
    for m in (*METRICS, *RANKED_DISTANCES):
        means = [r.stats[m].mean for r in contenders if m in r.stats and not math.isnan(r.stats[m].mean)]
        if means:
            top = max(means) if m in METRICS else min(means)
            for r in contenders:
                if m in r.stats and r.stats[m].mean == top:
                    r.best.add(m)


def _null_rows(nulls: Iterable[RunRecord], direction: str) -> tuple[list[RowResult], dict[str, dict[str, float]]]:
    """The null rows of ``direction`` (one run per FCN each), and the floor of each FCN: the best
    null value per metric among the null runs that FCN scored."""
    by_null: dict[str, list[RunRecord]] = {}
    for run in nulls:
        by_null.setdefault(run.row, []).append(run)
    rows = [_fill_row(PaperRow(key, NULL_ROW_NAMES[key], None), by_null[key], direction, null=True)
            for key in NULL_ROWS[direction] if key in by_null]
    floors: dict[str, dict[str, float]] = {}
    for row in rows:
        for run in row.runs:
            floor = floors.setdefault(run.scored_by(direction), {})
            for m, value in run.scores(direction).items():
                floor[m] = max(floor.get(m, -math.inf), value)
    return [r for r in rows if r.n], floors


def _versus_floor(row: RowResult, floors: dict[str, dict[str, float]], direction: str) -> dict[str, Comparison]:
    """Each run of ``row`` paired with the floor of the FCN that scored it (runs whose FCN scored
    no null row are left out of the test)."""
    out = {}
    for m in METRICS:
        pairs = [(value, floors[fcn][m]) for run, value in zip(row.runs, row.values[m])
                 if (fcn := run.scored_by(direction)) in floors]
        out[m] = paired([v for v, _ in pairs], [f for _, f in pairs])
    return out


def fill_table(
    table: PaperTable,
    runs: Iterable[RunRecord],
    ground_truth: Sequence[Mapping[str, float]] = (),
    alpha: float = ALPHA,
    nulls: Iterable[RunRecord] = (),
    outside: Sequence[PaperRow] = (),
) -> TableResult:
    """The paper's ``table`` filled with ``runs`` (grouped by their row, aggregated over seeds).

    ``ground_truth``: one dict of the three scores per distinct evaluator FCN (labels→photo tables
    only). ``nulls``: the null translators' runs (their ``row`` is a key of
    :data:`cgbench.protocol.NULL_ROWS`), one per row and FCN; the best of them per metric and FCN
    is the floor. ``outside``: rows the paper does not have (scored from images or checkpoints made
    outside cgbench, or a sweep's own rows), shown where they have scores of the table's direction.
    Every row but the reference is compared with full CycleGAN (paired over shared seeds, Welch
    otherwise), and every trained row with the floor, per metric.
    """
    direction = table.direction
    by_row: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_row.setdefault(run.row, []).append(run)
    rows = [_fill_row(r, by_row.get(r.key, []), direction) for r in table.rows]
    rows += [row for r in (*table.extra_rows, *outside)
             if (row := _fill_row(r, by_row.get(r.key, []), direction, extra=True)).runs]
    reference = next((r for r in rows if r.is_reference), None)
    for row in rows:
        if row is not reference:
            row.vs_reference = {m: compare(row.pairs(m), reference.pairs(m) if reference else []) for m in METRICS}
    _mark_best(rows)
    null_rows, floors = _null_rows(nulls, direction)

    gt_row = None
    if direction == "labels2photo":
        gt_row = RowResult("ground_truth", GROUND_TRUTH_NAME, GROUND_TRUTH, ceiling=True)
        gts = [g for g in ground_truth if all(m in g for m in METRICS)]
        gt_row.values = {m: [float(g[m]) for g in gts] for m in METRICS}
        gt_row.stats = {m: aggregate(gt_row.values[m]) for m in METRICS}

    used = [r for row in rows for r in row.runs]
    seeds = sorted({r.seed for r in used if r.seed}, key=_seed_key)
    first = used[0] if used else None
    result = TableResult(
        table, rows, gt_row, null_rows, seeds,
        dataset=first.dataset if first else "", digest=first.digest if first else "",
        preset=first.preset if first else "", setting=setting_departures(r.params for r in used), alpha=alpha,
        floors=floors if null_rows else {},
    )
    if null_rows:
        for row in rows:
            if row.n:
                row.vs_floor = _versus_floor(row, floors, direction)
    return result
