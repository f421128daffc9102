"""What the runs show about the paper's claims, table by table: pure, no MLflow, no I/O.

A claim is "A > B" on one metric (per-pixel acc., per-class acc., class IoU):

* CycleGAN > each method the paper compares it with: CoGAN, BiGAN/ALI, SimGAN, Feature loss + GAN
  (Tables 2, 3); Cycle alone, GAN alone, GAN + forward cycle, GAN + backward cycle (Tables 4, 5).
* Every trained row > the floor (the best null row scored by the same FCN).

Not claims: pix2pix is the paired upper bound, shown beside CycleGAN as what supervision reaches;
the paper claims neither that CycleGAN beats it nor a margin under it. The rows the paper's tables
do not have (CycleGAN + identity, rows scored from elsewhere, a sweep's own rows) claim nothing
against CycleGAN; they, and pix2pix, are still held to the floor.

Each claim's test is the one its table made (two-sided: paired t over shared seeds, Welch where no
seeds are shared; against the floor, each run paired with its FCN's floor). The claims of one table
are one family, corrected by Holm's step-down method. A claim is **shown** when its Holm-adjusted
p < alpha and the difference has the claimed sign, **contradicted** when significant with the
other sign, **not resolved** otherwise (with n, and the smallest difference these seeds would show
whatever the other claims: t_{1−alpha/(2m), df} · se, Bonferroni's bound on Holm's thresholds),
and **not run** when a side has no runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from cgbench.report.aggregate import Comparison, holm
from cgbench.report.paper import METRICS
from cgbench.report.tables import RowResult, TableResult

SHOWN, CONTRADICTED, NOT_RESOLVED, NOT_RUN = "shown", "contradicted", "not resolved", "not run"
VERDICTS = (SHOWN, CONTRADICTED, NOT_RESOLVED, NOT_RUN)
FLOOR = "floor"
FLOOR_NAME = "the floor"
SHORT_METRICS = {"per_pixel_acc": "per-pixel", "per_class_acc": "per-class", "class_iou": "IoU"}


@dataclass(frozen=True)
class Claim:
    """One claim "better > worse" on one metric of one table, and what the runs say about it."""

    table: int
    direction: str
    better: str  # a row key
    better_name: str
    worse: str  # a row key, or FLOOR
    worse_name: str
    metric: str
    comparison: Comparison | None  # better − worse; None: a side has no runs
    published: float | None = None  # better − worse in the paper's table
    why: str = ""  # why a claim is not run or not resolved, in words
    verdict: str = NOT_RUN
    p_holm: float | None = None
    family: int = 0  # the number of tests Holm corrected over
    resolvable: float = math.nan  # the smallest |difference| these seeds would show (nan: untestable)

    @property
    def text(self) -> str:
        return f"{self.better_name} > {self.worse_name}"

    @property
    def n(self) -> int:
        return self.comparison.n if self.comparison is not None else 0


def _published(better: RowResult, worse: RowResult, metric: str) -> float | None:
    a, b = better.published_value(metric), worse.published_value(metric)
    return None if a is None or b is None else round(a - b, 6)


def _reference_claims(result: TableResult) -> list[Claim]:
    ref = result.reference
    out = []
    for row in result.rows:
        if ref is None or row.extra or row.upper_bound or row is ref:
            continue
        missing = [r.name for r in (ref, row) if r.n == 0]
        for m in METRICS:
            comparison = None if missing else row.vs_reference[m].reversed()
            out.append(Claim(result.number, result.table.direction, ref.key, ref.name, row.key, row.name, m,
                             comparison, _published(ref, row, m), " and ".join(missing) + " not run" if missing else ""))
    return out


def _floor_claims(result: TableResult) -> list[Claim]:
    out = []
    for row in result.rows:
        for m in METRICS:
            comparison, why = None, ""
            if not result.nulls:
                why = "no null rows recorded (cgbench eval --nulls)"
            elif row.n == 0:
                why = f"{row.name} not run"
            elif row.vs_floor[m].n == 0:
                why = "no null row scored by the FCN of its runs"
            else:
                comparison = row.vs_floor[m]
            out.append(Claim(result.number, result.table.direction, row.key, row.name, FLOOR, FLOOR_NAME, m,
                             comparison, None, why))
    return out


def judge(claims: list[Claim], alpha: float) -> list[Claim]:
    """The verdict of each claim: Holm's correction over those that could be tested."""
    tested = [i for i, c in enumerate(claims) if c.comparison is not None and c.comparison.p is not None]
    adjusted = dict(zip(tested, holm([claims[i].comparison.p for i in tested])))
    m = len(tested)
    out = []
    for i, claim in enumerate(claims):
        c = claim.comparison
        if c is None or c.n == 0:
            out.append(replace(claim, verdict=NOT_RUN, family=m))
        elif i not in adjusted:
            out.append(replace(claim, verdict=NOT_RESOLVED, why=f"n = {c.n}: one run resolves nothing", family=m))
        else:
            p = adjusted[i]
            verdict = NOT_RESOLVED if p >= alpha else (SHOWN if c.diff_mean > 0 else CONTRADICTED)
            resolvable = c.resolvable(alpha / m)
            why = f"n = {c.n}; would show a difference of {resolvable:.3g} or more" if verdict == NOT_RESOLVED else ""
            out.append(replace(claim, verdict=verdict, p_holm=p, family=m, resolvable=resolvable, why=why))
    return out


def claims(result: TableResult) -> list[Claim]:
    """Every claim of ``result``'s table, judged: CycleGAN's against the paper's other rows, then
    every row's against the floor, each on the three scores."""
    return judge(_reference_claims(result) + _floor_claims(result), result.alpha)


# --- in words ------------------------------------------------------------------------------------


def _metrics_text(metrics: list[str]) -> str:
    if len(metrics) == len(METRICS):
        return "all three scores"
    return ", ".join(SHORT_METRICS[m] for m in metrics)


def _grouped(judged: list[Claim]) -> str:
    """'A > B (per-pixel, IoU); C > D (all three scores)', claims in their order."""
    by_text: dict[str, list[str]] = {}
    for claim in judged:
        by_text.setdefault(claim.text, []).append(claim.metric)
    return "; ".join(f"{text} ({_metrics_text(metrics)})" for text, metrics in by_text.items())


def _unresolved_note(judged: list[Claim]) -> str:
    """What these seeds could have resolved: the span of the smallest differences they would show."""
    sizes = sorted(c.resolvable for c in judged if not math.isnan(c.resolvable))
    parts = []
    if sizes:
        low, high = f"{sizes[0]:.3f}", f"{sizes[-1]:.3f}"
        span = low if low == high else f"{low} to {high}"
        parts.append(f" With these seeds only differences of {span} or more would be shown (claim by claim in the "
                     "claims' CSV).")
    if any(c.n < 2 for c in judged):
        parts.append(" Where n = 1, one run resolves nothing.")
    return "".join(parts)


HEADS = {SHOWN: "Shown", CONTRADICTED: "Contradicted (the runs show the opposite)",
         NOT_RESOLVED: "Not resolved at this budget", NOT_RUN: "Not run"}


def lines(result: TableResult, judged: list[Claim] | None = None) -> list[str]:
    """The verdict in plain words: one lead sentence, then one line per kind of verdict."""
    judged = claims(result) if judged is None else judged
    if not judged:
        return []
    family = judged[0].family
    counts = sorted({r.n for r in result.rows if r.n})
    runs = "no runs" if not counts else (
        f"{counts[0]} run{'s' if counts[-1] != 1 else ''} per row" if len(counts) == 1
        else f"{counts[0]} to {counts[-1]} runs per row")
    lead = (f"What these runs show about the paper's claims at this setting ({runs}; shown and contradicted hold "
            f"at the {result.alpha:.0%} level after Holm's correction over the table's {family} tests):")
    if family == 0:
        lead = (f"What these runs show about the paper's claims at this setting: nothing yet ({runs}; a test "
                "needs at least 2 runs of each side).")
    out = [lead]
    for verdict in VERDICTS:
        group = [c for c in judged if c.verdict == verdict]
        if group:
            note = _unresolved_note(group) if verdict == NOT_RESOLVED else ""
            out.append(f"{HEADS[verdict]}: {_grouped(group)}.{note}")
    return out


def plain_text(results: list[TableResult]) -> str:
    """Every table's verdict in plain words, for a terminal (the quickstart prints it last)."""
    blocks = []
    for result in results:
        body = lines(result)
        if body:
            blocks.append("\n".join([f"Table {result.number}. {result.table.title}.", *body]))
    return "\n\n".join(blocks)
