"""Pure statistics over seeds, and the paper's tables filled with them. No MLflow, no I/O.

* :func:`aggregate`: mean, sample standard deviation (n−1), the half-width of the 95% confidence
  interval of the mean (Student t with n−1 degrees of freedom) and n.
* :func:`welch_p`: two-sided Welch t-test (unequal variances) of two samples; None when either has
  fewer than 2 values.
* :func:`above_p`: one-sided one-sample t-test of a row's seed values against a fixed value (the
  floor); None when there are fewer than 2 values.
* :func:`fill_table`: one :class:`~cgbench.report.paper.PaperTable` with our runs' numbers beside the
  published ones, each row tested against full CycleGAN and against the floor (the best null row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from cgbench.protocol import DISTANCE_METRICS, NULL_ROW_NAMES, NULL_ROWS, RANKED_DISTANCES, metric_key
from cgbench.report.paper import (
    GROUND_TRUTH, GROUND_TRUTH_NAME, METRICS, REFERENCE_ROW, PaperRow, PaperTable, setting_departures,
)

CONFIDENCE = 0.95
ALPHA = 0.05


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample standard deviation (ddof 1); nan when n < 2
    ci: float  # half-width of the 95% confidence interval of the mean; nan when n < 2
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.ci

    @property
    def high(self) -> float:
        return self.mean + self.ci


def aggregate(values: Iterable[float], confidence: float = CONFIDENCE) -> Stat:
    """Mean, sample std, t-interval half-width and count of ``values`` (NaNs are dropped)."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return Stat(math.nan, math.nan, math.nan, 0)
    mean = math.fsum(xs) / n
    if n < 2:
        return Stat(mean, math.nan, math.nan, 1)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    from scipy import stats

    ci = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Stat(mean, std, ci, n)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p of Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``).

    None when either sample has fewer than 2 values (not testable). NaN when both samples have no
    variance (the statistic is undefined) — unless they are identical constants, then 1.0.
    """
    a = [float(x) for x in a if not math.isnan(float(x))]
    b = [float(x) for x in b if not math.isnan(float(x))]
    if len(a) < 2 or len(b) < 2:
        return None
    if len(set(a)) == 1 and len(set(b)) == 1:
        return 1.0 if a[0] == b[0] else math.nan
    import warnings

    from scipy import stats

    with warnings.catch_warnings():  # "precision loss" when one sample is (nearly) constant
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def above_p(values: Sequence[float], threshold: float) -> float | None:
    """One-sided p that the mean of ``values`` exceeds ``threshold`` (one-sample Student t, H1:
    mean > threshold). None with fewer than 2 values; with no spread, 0 when every value is above
    and 1 otherwise (the statistic is undefined there)."""
    xs = [float(x) for x in values if not math.isnan(float(x))]
    if len(xs) < 2 or math.isnan(threshold):
        return None
    if len(set(xs)) == 1:
        return 0.0 if xs[0] > threshold else 1.0
    from scipy import stats

    return float(stats.ttest_1samp(xs, threshold, alternative="greater").pvalue)


@dataclass(frozen=True)
class RunRecord:
    """One finished, evaluated training run, as the report needs it."""

    run_id: str
    name: str
    row: str
    seed: str
    metrics: Mapping[str, float]  # full MLflow keys, e.g. eval/labels2photo/class_iou
    tags: Mapping[str, str] = field(default_factory=dict)
    dataset: str = ""
    digest: str = ""
    preset: str = ""
    image_size: str = ""
    params: Mapping[str, str] = field(default_factory=dict)  # the run's config, as MLflow params

    @property
    def random_features(self) -> bool:
        return self.tags.get("cgbench.feature_weights") == "random"

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
    values: dict[str, list[float]] = field(default_factory=dict)
    p: dict[str, float | None] = field(default_factory=dict)  # vs the reference row; empty: not compared
    runs: list[RunRecord] = field(default_factory=list)
    best: set[str] = field(default_factory=set)
    random_features: bool = False
    floor_p: dict[str, float | None] = field(default_factory=dict)  # one-sided, vs the best null; empty: no floor

    def clears_floor(self, metric: str, alpha: float = ALPHA) -> bool | None:
        """Whether the row's seed mean is above the floor (one-sided p < alpha, n >= 2); None when
        there is no floor to clear or the row is a reference row itself."""
        if metric not in self.floor_p:
            return None
        return significant(self.floor_p[metric], alpha)

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

    @property
    def number(self) -> int:
        return self.table.number

    @property
    def all_rows(self) -> list[RowResult]:
        return self.rows + self.nulls + ([self.ground_truth] if self.ground_truth is not None else [])

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
    :data:`cgbench.protocol.NULL_ROWS`); the best of them per metric is the floor. ``outside``:
    rows the paper does not have (scored from images or checkpoints made outside cgbench, or a
    sweep's own rows), shown where they have scores of the table's direction. Every row but
    the reference is Welch-tested against full CycleGAN, and every trained row is tested
    (one-sided) against the floor, per metric.
    """
    by_row: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_row.setdefault(run.row, []).append(run)
    rows = [_fill_row(r, by_row.get(r.key, []), table.direction) for r in table.rows]
    rows += [row for r in (*table.extra_rows, *outside)
             if (row := _fill_row(r, by_row.get(r.key, []), table.direction, extra=True)).runs]

    reference = next((r for r in rows if r.is_reference), None)
    for row in rows:
        if row is reference:
            continue
        ref_values = reference.values if reference is not None else {m: [] for m in METRICS}
        row.p = {m: welch_p(row.values[m], ref_values[m]) for m in METRICS}

    contenders = [r for r in rows if not r.upper_bound and r.n > 0]
    for m in (*METRICS, *RANKED_DISTANCES):  # higher scores are better, lower distances
        means = [r.stats[m].mean for r in contenders if m in r.stats and not math.isnan(r.stats[m].mean)]
        if means:
            top = max(means) if m in METRICS else min(means)
            for r in contenders:
                if m in r.stats and r.stats[m].mean == top:
                    r.best.add(m)

    by_null: dict[str, list[RunRecord]] = {}
    for run in nulls:
        by_null.setdefault(run.row, []).append(run)
    null_rows = [_fill_row(PaperRow(key, NULL_ROW_NAMES[key], None), by_null[key], table.direction, null=True)
                 for key in NULL_ROWS[table.direction] if key in by_null]
    null_rows = [r for r in null_rows if r.n]

    gt_row = None
    if table.direction == "labels2photo":
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
    )
    if null_rows:
        for row in rows:
            if row.n:
                row.floor_p = {m: above_p(row.values[m], result.floor(m)) for m in METRICS}
    return result


def significant(p: float | None, alpha: float = ALPHA) -> bool:
    return p is not None and not math.isnan(p) and p < alpha
