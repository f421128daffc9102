"""Filled tables → Markdown, LaTeX (booktabs) and tidy CSV, each with the verdict on the paper's
claims under its table, and the claims' own CSV. Pure text (the HTML page: :mod:`~cgbench.report.page`)."""

from __future__ import annotations

import csv
import io
import math
import re

from cgbench.report import verdicts
from cgbench.report.aggregate import Stat, significant
from cgbench.report.cells import (
    DISTANCE_DIGITS, FLOOR_EXPLAINED, P_HEADER, SIG_MARK, ReportMeta, caption, caption_details, cell_text,
    distance_columns, distance_header, distance_text, fmt, footnotes, heading, published_text, row_name, row_p_text,
)
from cgbench.report.paper import METRIC_NAMES, METRICS
from cgbench.report.tables import RowResult, TableResult

# --- Markdown --------------------------------------------------------------------------------


_HTML_TAG = re.compile(r"<(?=[A-Za-z/!?])")  # where Markdown would pass raw HTML through (a tag, a comment)
_HTML_ENTITY = re.compile(r"&(?=#?\w+;)")
_MD_NAME = str.maketrans({c: "\\" + c for c in "\\`*_[]"})


def _md_escape(text: str) -> str:
    """Text in a Markdown table or paragraph: HTML kept as text (as the HTML page escapes it), and
    the table's column bars. A comparison such as "A > B" or "p < 0.05" is left as it reads."""
    return _HTML_TAG.sub("&lt;", _HTML_ENTITY.sub("&amp;", text)).replace("|", "\\|")


def _md_name(text: str) -> str:
    """A name given by the user (a run, row, experiment or sweep): also no emphasis, code or link."""
    return _md_escape(text.translate(_MD_NAME))


def markdown_table(result: TableResult) -> str:
    header = ["Method", "n"]
    for m in METRICS:
        header += [METRIC_NAMES[m], "paper"]
    header.append(P_HEADER)
    distances = distance_columns(result)
    header += [distance_header(m) for m in distances]
    lines = [f"**{_md_escape(heading(result))}** {_md_escape(caption_details(result))}", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join([":---", "--:"] + ["--:"] * (2 * len(METRICS)) + [":--"] + ["--:"] * len(distances))
             + "|"]
    for row in result.all_rows:
        cells = [_md_name(row_name(row)), str(row.n)]
        for m in METRICS:
            text = cell_text(row, m)
            cells += [f"**{text}**" if m in row.best else text, published_text(row, m)]
        cells.append(row_p_text(row, result.alpha))
        for m in distances:
            text = distance_text(row, m)
            cells.append(f"**{text}**" if m in row.best else text)
        lines.append("| " + " | ".join(cells) + " |")
    notes = footnotes(result)
    if notes:
        lines.append("")
        lines += [f"{mark} {_md_escape(text)}  " for mark, text in notes]
        lines[-1] = lines[-1].rstrip()
    verdict = verdicts.lines(result)
    if verdict:
        lines += ["", f"**Verdict.** {_md_escape(verdict[0])}", ""] + [f"- {_md_escape(line)}" for line in verdict[1:]]
    return "\n".join(lines)


def markdown(meta: ReportMeta, results: list[TableResult]) -> str:
    out = [f"# cgbench report: {_md_name(meta.name)}", "",
           f"Runs from {_md_name(meta.source)}" + (f" in {_md_name(meta.store)}" if meta.store else "") + ".", "",
           FLOOR_EXPLAINED, ""]
    for note in meta.notes:
        out.append(f"> Note: {_md_name(note)}")
    if meta.notes:
        out.append("")
    for result in results:
        out += [markdown_table(result), ""]
    return "\n".join(out).rstrip() + "\n"

# --- LaTeX ---------------------------------------------------------------------------------------

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "±": r"$\pm$", "→": r"$\rightarrow$", "−": "--", "–": "--", "×": r"$\times$",
    "†": r"\textsuperscript{\textdagger}", "‡": r"\textsuperscript{\textdaggerdbl}", "§": r"\textsuperscript{\S}",
    "¶": r"\textsuperscript{\P}", "▴": r"$^{\blacktriangle}$", "≥": r"$\geq$", "λ": r"$\lambda$",
    "↓": r"$\downarrow$", "é": r"\'{e}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_ours(stat: Stat, best: bool, clears: bool = False, digits: int = 3) -> str:
    if stat.n == 0:
        return r"\textit{not run}"
    if stat.n == 1 or math.isnan(stat.ci):
        body = fmt(stat.mean, digits)
    else:
        body = rf"{fmt(stat.mean, digits)} \pm {fmt(stat.ci, digits)}"
    mark = r"^{\blacktriangle}" if clears else ""
    return rf"$\mathbf{{{body}}}{mark}$" if best else f"${body}{mark}$"


def _latex_p(row: RowResult, alpha: float) -> str:
    if row.ceiling or row.null:
        return ""
    if row.is_reference:
        return r"\textit{ref.}"
    text = row_p_text(row, alpha).replace("<", r"$<$").replace("–", "--")
    return text.replace(SIG_MARK, r"$^{*}$")


def latex_table(result: TableResult) -> str:
    distances = distance_columns(result)
    ncols = 2 + 2 * len(METRICS) + 1 + len(distances)
    spec = "l r " + " ".join("r r" for _ in METRICS) + " l" + " r" * len(distances)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\caption{" + latex_escape(caption(result)) + "}",
        rf"\label{{tab:cgbench-{result.number}}}",
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join(["Method", "$n$"] + [rf"\multicolumn{{2}}{{c}}{{{latex_escape(METRIC_NAMES[m])}}}"
                                          for m in METRICS] + [r"$p$ vs.\ CycleGAN"]
                   + [latex_escape(distance_header(m)) for m in distances]) + r" \\",
        " ".join(rf"\cmidrule(lr){{{3 + 2 * i}-{4 + 2 * i}}}" for i in range(len(METRICS))),
        " & ".join(["", ""] + ["ours", "paper"] * len(METRICS) + ["pixel / class / IoU"] + ["ours"] * len(distances))
        + r" \\",
        r"\midrule",
    ]
    for row in result.rows:
        lines.append(_latex_row(row, result.alpha, distances))
    if result.nulls:
        lines.append(r"\midrule")
        lines += [_latex_row(row, result.alpha, distances) for row in result.nulls]
    if result.ground_truth is not None:
        lines.append(r"\midrule")
        lines.append(_latex_row(result.ground_truth, result.alpha, distances))
    lines.append(r"\bottomrule")
    notes = footnotes(result)
    for mark, text in notes:
        lines.append(rf"\multicolumn{{{ncols}}}{{l}}{{\footnotesize {latex_escape(mark)}~{latex_escape(text)}}} \\")
    lines += [r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def _latex_row(row: RowResult, alpha: float, distances: list[str]) -> str:
    cells = [latex_escape(row_name(row)), str(row.n)]
    for m in METRICS:
        cells += [_latex_ours(row.stats[m], m in row.best, bool(row.clears_floor(m))),
                  latex_escape(published_text(row, m))]
    cells.append(_latex_p(row, alpha))
    cells += [_latex_ours(row.stats[m], m in row.best, digits=DISTANCE_DIGITS[m])
              if m in row.stats and row.stats[m].n else "--" for m in distances]
    return " & ".join(cells) + r" \\"


def latex(meta: ReportMeta, results: list[TableResult]) -> str:
    head = [f"% cgbench report: {meta.name} ({meta.source}).",
            r"% Needs \usepackage{booktabs} and \usepackage{amssymb} in the preamble."]
    return "\n".join(head) + "\n\n" + "\n\n".join(latex_table(r) + latex_verdict(r) for r in results) + "\n"


def latex_verdict(result: TableResult) -> str:
    """The verdict under a table as a short paragraph after its float ("" when it has no claims)."""
    verdict = verdicts.lines(result)
    if not verdict:
        return ""
    return (f"\n\n\\noindent\\textit{{Verdict on Table {result.number}.}} "
            + latex_escape(" ".join(verdict)))


# --- CSV ---------------------------------------------------------------------------------------------

CSV_FIELDS = ("table", "direction", "row", "row_name", "metric", "mean", "std", "ci", "n", "published",
              "published_flag", "p_vs_cyclegan", "test", "p_paired", "diff_mean", "diff_ci", "significant", "floor",
              "p_vs_floor", "clears_floor",
              "random_features", "dataset", "dataset_digest", "preset", "seeds", "run_ids")


def _num(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


EMPTY = Stat(math.nan, math.nan, math.nan, 0)


def _vs_reference(row: RowResult, metric: str) -> dict[str, str]:
    """The CSV's comparison with CycleGAN: the test used, its two-sided p, the paired p (where the
    test was paired), and the mean difference row − CycleGAN with its 95% interval's half-width."""
    c = row.vs_reference.get(metric)
    if c is None:
        return {"p_vs_cyclegan": "", "test": "", "p_paired": "", "diff_mean": "", "diff_ci": ""}
    return {"p_vs_cyclegan": _num(c.p), "test": c.test, "p_paired": _num(c.p_paired), "diff_mean": _num(c.diff_mean),
            "diff_ci": _num(c.diff_ci())}


def csv_text(results: list[TableResult]) -> str:
    """Tidy: one line per table × row × metric (the three scores, then the distances some row has)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        for row in result.all_rows:
            for m in (*METRICS, *result.distances):
                s = row.stats.get(m, EMPTY)
                p = row.p.get(m)
                writer.writerow({
                    "table": result.number, "direction": result.table.direction, "row": row.key,
                    "row_name": row.name, "metric": m, "mean": _num(s.mean), "std": _num(s.std), "ci": _num(s.ci),
                    "n": s.n, "published": _num(row.published_value(m)),
                    "published_flag": (row.flag or "") if m in METRICS else "",
                    **_vs_reference(row, m),
                    "significant": str(significant(p, result.alpha)).lower() if m in row.p else "",
                    "floor": _num(result.floor(m)) if result.nulls and m in METRICS else "",
                    "p_vs_floor": _num(row.floor_p.get(m)),
                    "clears_floor": "" if row.clears_floor(m) is None else str(row.clears_floor(m)).lower(),
                    "random_features": str(row.random_features).lower(), "dataset": result.dataset,
                    "dataset_digest": result.digest, "preset": result.preset, "seeds": " ".join(result.seeds),
                    "run_ids": " ".join(r.run_id for r in row.runs),
                })
    return out.getvalue()



CLAIMS_FIELDS = ("table", "direction", "claim", "better", "worse", "metric", "verdict", "test", "n", "diff_mean",
                 "diff_ci", "p", "p_holm", "family", "resolvable", "published_diff", "why")


def claims_csv_text(results: list[TableResult]) -> str:
    """One line per claim and metric: the verdict, the test, the difference better − worse with its
    95% interval's half-width, the raw and Holm-adjusted p over the table's ``family`` of tests,
    the smallest difference these seeds would show (``resolvable``), and the paper's difference."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CLAIMS_FIELDS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        for claim in verdicts.claims(result):
            c = claim.comparison
            writer.writerow({
                "table": claim.table, "direction": claim.direction, "claim": claim.text, "better": claim.better,
                "worse": claim.worse, "metric": claim.metric, "verdict": claim.verdict,
                "test": c.test if c else "", "n": claim.n, "diff_mean": _num(c.diff_mean if c else None),
                "diff_ci": _num(c.diff_ci() if c else None), "p": _num(c.p if c else None),
                "p_holm": _num(claim.p_holm), "family": claim.family, "resolvable": _num(claim.resolvable),
                "published_diff": _num(claim.published), "why": claim.why,
            })
    return out.getvalue()
