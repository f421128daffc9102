"""The words and numbers every format of the report shares: what a report is about, each cell's
text, the tables' captions (which name the tests actually used) and footnotes. Pure text."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cgbench.protocol import DISTANCE_NAMES, RANKED_DISTANCES
from cgbench.report.aggregate import PAIRED, WELCH, Stat, significant
from cgbench.report.paper import FLAGS, METRICS, OUR_SETTINGS
from cgbench.report.tables import RowResult, TableResult

RANDOM_MARK = "§"
RANDOM_NOTE = "VGG-16 features from random weights, not ImageNet"
OURS_MARK = "¶"
SIG_MARK = "*"
FLOOR_MARK = "▴"
P_HEADER = "p vs CycleGAN (pixel / class / IoU)"
LOWER_MARK = "↓"
DISTANCE_DIGITS = {"fid": 2, "kid_mean": 4, "fd_fcn": 3}  # FID as papers print it; KID is small
FLOOR_EXPLAINED = ("The floor is what a translator that learned nothing scores through the same evaluator: "
                   "the null rows, below the trained ones. A number means something only where it clears the "
                   "best null row of its column, as the ceiling (ground truth) bounds it from above.")


@dataclass
class ReportMeta:
    """What the report is about (for titles and notes)."""

    name: str
    source: str  # e.g. "experiment 'cgbench'" or "sweep 1a2b… (name)"
    store: str = ""  # the MLflow store as the user named it, never a machine path (build.store_name)
    notes: list[str] = field(default_factory=list)  # warnings: unevaluated runs, unknown rows, ...


# --- cell text -------------------------------------------------------------------------


def fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def ours_text(stat: Stat, pm: str = "±", digits: int = 3) -> str:
    if stat.n == 0:
        return "not run"
    if stat.n == 1 or math.isnan(stat.ci):
        return fmt(stat.mean, digits)
    return f"{fmt(stat.mean, digits)} {pm} {fmt(stat.ci, digits)}"


def p_text(p: float | None, alpha: float) -> str:
    if p is None:
        return "n<2"
    if math.isnan(p):
        return "n/a"
    text = "<0.001" if p < 0.001 else f"{p:.3f}"
    return text + (SIG_MARK if significant(p, alpha) else "")


def cell_text(row: RowResult, metric: str, pm: str = "±") -> str:
    """Our value of a row and metric, marked when it clears the floor."""
    return ours_text(row.stats[metric], pm) + (FLOOR_MARK if row.clears_floor(metric) else "")


def distance_columns(result: TableResult) -> list[str]:
    """The distances shown as extra columns (FID, KID, FD-FCN): those some row of the table has."""
    return [m for m in result.distances if m in RANKED_DISTANCES]


def distance_header(metric: str) -> str:
    return f"{DISTANCE_NAMES[metric]} {LOWER_MARK}"


def distance_text(row: RowResult, metric: str, pm: str = "±") -> str:
    stat = row.stats.get(metric)
    return "–" if stat is None or stat.n == 0 else ours_text(stat, pm, DISTANCE_DIGITS[metric])


def distances_caption(result: TableResult) -> str:
    shown = distance_columns(result)
    parts = [f"{LOWER_MARK} lower is better."]
    if "fid" in shown or "kid_mean" in shown:
        parts.append("FID, KID: G's photos against the real validation photos in Inception features (torchmetrics, "
                     "antialias=False); KID is each run's mean over its subsets (their spread: kid_std in the CSV).")
    if "fd_fcn" in shown:
        parts.append("FD-FCN: the Fréchet distance in the evaluator FCN's own features, cgbench's measure, not FID: "
                     "comparable only between rows scored by the same FCN.")
    return " ".join(parts)


def row_p_text(row: RowResult, alpha: float) -> str:
    if row.ceiling or row.null:
        return ""
    if row.is_reference:
        return "(reference)"
    if row.n == 0:
        return "–"
    texts = [p_text(row.p.get(m), alpha) for m in METRICS]
    return texts[0] if len(set(texts)) == 1 and texts[0] in ("n<2", "n/a") else " / ".join(texts)


def published_text(row: RowResult, metric: str) -> str:
    value = row.published_value(metric)
    if value is None:
        return "–"
    mark = FLAGS[row.flag][0] if row.flag and metric == METRICS[-1] else ""
    return f"{value:.2f}{mark}"


def row_name(row: RowResult) -> str:
    return (row.name + (RANDOM_MARK if row.random_features else "")
            + (OURS_MARK if row.key in OUR_SETTINGS and row.n else ""))


def heading(result: TableResult) -> str:
    return f"Table {result.number}. {result.table.title}."


def tests_caption(result: TableResult) -> str:
    """The sentence on the tests against CycleGAN: the ones the table actually used."""
    compared = [r for r in result.rows if r.vs_reference and r.n]
    used = {c.test for r in compared for c in r.vs_reference.values()} - {""}
    welch_rows = [r.name for r in compared if any(c.test == WELCH for c in r.vs_reference.values())]
    if not used:
        text = "p: no row could be tested against CycleGAN (a test needs 2 runs of each)"
    elif PAIRED in used:
        text = ("p: paired t-test of each row against CycleGAN on the per-seed differences, over the seeds both "
                "have (the rows of one seed share initial weights and data order), two-sided")
        if WELCH in used:
            text += ("; Welch's t-test (unequal variances) where a row shares fewer than 2 seeds with CycleGAN: "
                     + ", ".join(welch_rows))
    else:
        text = ("p: Welch's t-test (two-sided, unequal variances) of each row against CycleGAN across seeds "
                "(no row shares 2 seeds with CycleGAN)")
    return f"{text}; {SIG_MARK} p < {result.alpha:g}, uncorrected (the verdict below corrects for the table's claims)."


def caption_details(result: TableResult) -> str:
    """Everything the caption says beyond the heading: data, seeds, statistics, marks."""
    seeds = ", ".join(result.seeds) if result.seeds else "none"
    data = result.dataset or "?"
    if result.digest:
        data += f" (data {result.digest[:12]})"
    upper = any(r.upper_bound for r in result.rows)
    parts = [
        f"Dataset {data}, preset {result.preset or '?'}, seeds {seeds}." + (f" {result.setting}" if result.setting else ""),
        "Ours: mean ± 95% confidence interval over seeds (Student t); paper: Zhu et al. 2017 on Cityscapes.",
        tests_caption(result),
        "Bold: our best per column" + (" among unpaired methods (pix2pix is the paired upper bound)." if upper
                                       else "."),
    ]
    if result.nulls:
        best = " / ".join(fmt(result.floor(m)) for m in METRICS)
        parts.append(f"Null rows: translators that learned nothing, scored the same way (the floor; best: {best}). "
                     f"{FLOOR_MARK} the row is above the best null row scored by the same FCN: one-sided t-test "
                     f"of each run's difference from it, p < {result.alpha:g} (uncorrected, n ≥ 2).")
    else:
        parts.append("No null rows are recorded for these data, so no floor is shown: record them with "
                     "cgbench eval --nulls.")
    if result.ground_truth is not None:
        parts.append("Ground truth: real photos through the same FCN, the score's ceiling "
                     "(paper value from the pix2pix paper).")
    if result.ladder:
        parts.append(result.ladder)
    return " ".join(parts + ([distances_caption(result)] if distance_columns(result) else []))


def caption(result: TableResult) -> str:
    return heading(result) + " " + caption_details(result)


def footnotes(result: TableResult) -> list[tuple[str, str]]:
    notes = []
    for flag, (mark, text) in FLAGS.items():
        if any(r.flag == flag for r in result.rows):
            notes.append((mark, f"({flag}) {text}"))
    if any(r.random_features for r in result.rows):
        notes.append((RANDOM_MARK, RANDOM_NOTE))
    ours = [f"{r.name}: {OUR_SETTINGS[r.key]}" for r in result.rows if r.key in OUR_SETTINGS and r.n]
    if ours:
        notes.append((OURS_MARK, "settings of ours, not the paper's: " + "; ".join(ours)))
    return notes

