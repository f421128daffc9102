"""Table 1 of the paper: the "real vs fake" perceptual study, from the runs' ``study/*`` metrics.

Each run that recorded ``study/<direction>/fooled_rate`` (``cgbench study results``) is one line,
under the paper's row of its method: our mean ± standard error over participants (and their
number) beside the published values. The paper's study is on maps↔aerial photos (map→photo,
photo→map), ours on the runs' own validation data (labels→photo, photo→labels); the caption says
so. Runs of different data or resolutions are never mixed in one table.
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field
from typing import Iterable

from cgbench.errors import CgbenchError
from cgbench.protocol import Tags
from cgbench.report.paper import TABLES
from cgbench.report.render import CSV_FIELDS, latex_escape

NUMBER = 1
TITLE = '"Real vs fake" perceptual study: % of scored trials in which the generated image was judged real'
#: (our direction, its name, the paper's column on maps↔aerial photos)
COLUMNS = (("labels2photo", "labels→photo", "map→photo"), ("photo2labels", "photo→labels", "photo→map"))
#: The paper's Table 1 (docs/protocol.md#table-1-the-perceptual-study): row key → (name, (mean, s.e. or
#: None) per column), in percent.
PUBLISHED: dict[str, tuple[str, tuple[tuple[float, float | None], ...]]] = {
    "cogan": ("CoGAN", ((0.6, None), (0.9, None))),
    "bigan": ("BiGAN/ALI", ((2.1, None), (1.9, None))),
    "simgan": ("SimGAN", ((0.7, None), (2.6, None))),
    "feature-gan": ("Feature loss + GAN", ((1.2, None), (0.3, None))),
    "cyclegan": ("CycleGAN", ((26.8, 2.8), (23.2, 3.4))),
}
ROW_NAMES = {r.key: r.name for t in TABLES.values() for r in (*t.rows, *t.extra_rows)}


@dataclass(frozen=True)
class Cell:
    mean: float
    sem: float  # NaN with one participant
    n: int


@dataclass
class Line:
    key: str  # the run's row (cgbench.row tag)
    name: str
    run_id: str = ""  # "" : no run of this paper row
    run_name: str = ""
    cells: dict[str, Cell] = field(default_factory=dict)  # direction → our result

    @property
    def published(self) -> tuple[tuple[float, float | None], ...] | None:
        return PUBLISHED[self.key][1] if self.key in PUBLISHED else None


@dataclass
class StudyTable:
    lines: list[Line]
    dataset: str
    digest: str
    image_size: str


def _cell(metrics: dict[str, float], direction: str) -> Cell | None:
    key = f"study/{direction}/fooled_rate"
    if key not in metrics:
        return None
    return Cell(metrics[key], metrics.get(f"{key}_sem", math.nan), int(metrics.get(f"{key}_participants", 0)))


def fill(runs: Iterable, source: str) -> StudyTable:
    """Table 1 from MLflow runs (those with study metrics; the rest are ignored)."""
    studied = []
    for run in runs:
        cells = {d: c for d, _, _ in COLUMNS if (c := _cell(run.data.metrics, d)) is not None}
        if cells:
            tags = run.data.tags
            key = tags.get(Tags.ROW) or tags.get(Tags.METHOD, "?")
            studied.append((run, Line(key, ROW_NAMES.get(key, key), run.info.run_id,
                                      tags.get("mlflow.runName", run.info.run_id), cells)))
    if not studied:
        raise CgbenchError(f"no run of {source} has study results; serve a study (cgbench study serve --run RUN_ID "
                           "...), then record it (cgbench study results)")
    kinds = {(r.data.tags.get(Tags.DATASET, "?"), r.data.tags.get(Tags.DATASET_DIGEST, ""),
              r.data.params.get("image_size", "?")) for r, _ in studied}
    if len(kinds) > 1:
        what = "; ".join(f"{d} (data {g[:8] or '?'}) at {s}px" for d, g, s in sorted(kinds))
        raise CgbenchError(f"the studied runs of {source} differ in data or resolution ({what}); Table 1 compares "
                           "like with like: keep each study's runs in their own --experiment")
    lines = []
    for key, (name, _) in PUBLISHED.items():
        mine = sorted((line for _, line in studied if line.key == key), key=lambda l: l.run_name)
        lines += mine or [Line(key, name)]
    extra = sorted((line for _, line in studied if line.key not in PUBLISHED), key=lambda l: (l.key, l.run_name))
    (dataset, digest, size), = kinds
    return StudyTable(lines + extra, dataset, digest, size)


# --- text ------------------------------------------------------------------------------------


def ours_text(cell: Cell | None) -> str:
    if cell is None:
        return "not run"
    sem = "" if math.isnan(cell.sem) else f" ± {cell.sem:.1f}"
    return f"{cell.mean:.1f}{sem} (n={cell.n})"


def published_text(line: Line, column: int) -> str:
    if line.published is None:
        return "–"
    mean, sem = line.published[column]
    return f"{mean:.1f}" + ("" if sem is None else f" ± {sem:.1f}")


def line_name(line: Line) -> str:
    return line.name + (f" ({line.run_name})" if line.run_name else "")


def caption(table: StudyTable) -> str:
    data = table.dataset + (f" (data {table.digest[:12]})" if table.digest else "")
    return (f"Table 1. {TITLE}. Ours: {data} validation images at {table.image_size}x{table.image_size}, each "
            "generated image beside a real image of the target domain, not its own; mean ± standard error over "
            "the participants who completed their session (n; 10 practice trials with feedback, then 40 scored). "
            "Paper: Zhu et al. 2017, maps↔aerial photos (map→photo, photo→map), 25 participants per method.")


def _header() -> list[str]:
    out = ["Method"]
    for _, ours, paper in COLUMNS:
        out += [f"{ours}: ours", f"paper {paper}"]
    return out


def _cells(line: Line) -> list[str]:
    out = []
    for i, (direction, _, _) in enumerate(COLUMNS):
        out += [ours_text(line.cells.get(direction)), published_text(line, i)]
    return out


def markdown_table(table: StudyTable) -> str:
    esc = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = [f"**{esc(caption(table))}**", "", "| " + " | ".join(_header()) + " |",
             "|:---|" + "--:|" * (2 * len(COLUMNS))]
    lines += ["| " + " | ".join(esc(t) for t in [line_name(line), *_cells(line)]) + " |" for line in table.lines]
    return "\n".join(lines)


def latex_table(table: StudyTable) -> str:
    rows = [" & ".join(latex_escape(t) for t in [line_name(line), *_cells(line)]) + r" \\" for line in table.lines]
    return "\n".join([r"\begin{table}[t]", r"\centering", r"\small",
                      r"\caption{" + latex_escape(caption(table)) + "}", r"\label{tab:cgbench-1}",
                      r"\begin{tabular}{l " + "r r " * len(COLUMNS) + "}", r"\toprule",
                      " & ".join(latex_escape(t) for t in _header()) + r" \\", r"\midrule", *rows,
                      r"\bottomrule", r"\end{tabular}", r"\end{table}"])


def html_table(table: StudyTable) -> str:
    head = "".join(f"<th{' class=name' if i == 0 else ''}>{html.escape(t)}</th>" for i, t in enumerate(_header()))
    body = []
    for line in table.lines:
        cells = [f"<td class=name>{html.escape(line_name(line))}</td>"]
        cells += [f"<td class={'paper' if i % 2 else 'ours'}>{html.escape(t)}</td>" for i, t in enumerate(_cells(line))]
        body.append(f"<tr class='{'' if line.cells else 'notrun'}'>" + "".join(cells) + "</tr>")
    return "\n".join([f"<h2>Table 1: {html.escape(TITLE)}</h2>", '<table id="table-1">',
                      f"<caption>{html.escape(caption(table))}</caption>", f"<thead><tr>{head}</tr></thead><tbody>",
                      *body, "</tbody></table>"])


def csv_rows(table: StudyTable) -> str:
    """The lines of the report's tidy CSV (same columns; metric ``fooled_rate``), without its header."""
    from scipy import stats

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    for line in table.lines:
        for i, (direction, _, _) in enumerate(COLUMNS):
            cell = line.cells.get(direction)
            spread = cell is not None and cell.n > 1 and not math.isnan(cell.sem)
            writer.writerow({
                "table": NUMBER, "direction": direction, "row": line.key, "row_name": line.name,
                "metric": "fooled_rate", "mean": "" if cell is None else repr(cell.mean),
                "std": repr(cell.sem * math.sqrt(cell.n)) if spread else "",
                "ci": repr(float(stats.t.ppf(0.975, cell.n - 1)) * cell.sem) if spread else "",
                "n": 0 if cell is None else cell.n,
                "published": "" if line.published is None else repr(line.published[i][0]),
                "published_flag": "", "p_vs_cyclegan": "", "significant": "", "random_features": "",
                "dataset": table.dataset, "dataset_digest": table.digest, "preset": "", "seeds": "",
                "run_ids": line.run_id,
            })
    return out.getvalue()


def add_to(report, table: StudyTable) -> None:
    """Put Table 1 into a built report's Markdown, LaTeX, CSV and HTML (after the other tables)."""
    report.markdown = report.markdown.rstrip("\n") + "\n\n" + markdown_table(table) + "\n"
    report.latex = report.latex.rstrip("\n") + "\n\n" + latex_table(table) + "\n"
    report.csv += csv_rows(table)
    report.html = report.html.replace("\n</body>", "\n" + html_table(table) + "\n</body>", 1)
    report.table_1 = table
