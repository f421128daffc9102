"""Filled tables → Markdown, LaTeX (booktabs), tidy CSV and one self-contained HTML page. Pure text."""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field

from cgbench.protocol import DISTANCE_NAMES, RANKED_DISTANCES
from cgbench.report.aggregate import RowResult, Stat, TableResult, significant
from cgbench.report.paper import DIRECTIONS, FLAGS, METRIC_NAMES, METRICS, OUR_SETTINGS

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
        f"p: Welch's t-test (two-sided, unequal variances) of each row against CycleGAN across seeds; "
        f"{SIG_MARK} p < {result.alpha:g}, uncorrected for multiple comparisons.",
        "Bold: our best per column" + (" among unpaired methods (pix2pix is the paired upper bound)." if upper
                                       else "."),
    ]
    if result.nulls:
        best = " / ".join(fmt(result.floor(m)) for m in METRICS)
        parts.append(f"Null rows: translators that learned nothing, scored the same way (the floor; best: {best}). "
                     f"{FLOOR_MARK} the row's seed mean is above the best null row by a one-sided t-test, "
                     f"p < {result.alpha:g} (uncorrected, n ≥ 2).")
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


# --- Markdown --------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


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
        cells = [_md_escape(row_name(row)), str(row.n)]
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
    return "\n".join(lines)


def markdown(meta: ReportMeta, results: list[TableResult]) -> str:
    out = [f"# cgbench report: {meta.name}", "",
           f"Runs from {meta.source}" + (f" in {meta.store}" if meta.store else "") + ".", "",
           FLOOR_EXPLAINED, ""]
    for note in meta.notes:
        out.append(f"> Note: {note}")
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
    return "\n".join(head) + "\n\n" + "\n\n".join(latex_table(r) for r in results) + "\n"


# --- CSV ---------------------------------------------------------------------------------------------

CSV_FIELDS = ("table", "direction", "row", "row_name", "metric", "mean", "std", "ci", "n", "published",
              "published_flag", "p_vs_cyclegan", "significant", "floor", "p_vs_floor", "clears_floor",
              "random_features", "dataset", "dataset_digest", "preset", "seeds", "run_ids")


def _num(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


EMPTY = Stat(math.nan, math.nan, math.nan, 0)


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
                    "p_vs_cyclegan": _num(p), "significant": str(significant(p, result.alpha)).lower()
                    if m in row.p else "",
                    "floor": _num(result.floor(m)) if result.nulls and m in METRICS else "",
                    "p_vs_floor": _num(row.floor_p.get(m)),
                    "clears_floor": "" if row.clears_floor(m) is None else str(row.clears_floor(m)).lower(),
                    "random_features": str(row.random_features).lower(), "dataset": result.dataset,
                    "dataset_digest": result.digest, "preset": result.preset, "seeds": " ".join(result.seeds),
                    "run_ids": " ".join(r.run_id for r in row.runs),
                })
    return out.getvalue()


# --- HTML -----------------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1f2328;
 max-width:1180px;margin:0 auto;padding:24px 32px 64px;line-height:1.45;background:#fff}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.25em;margin:1.8em 0 .5em;padding-bottom:.25em;
 border-bottom:1px solid #d8dee4}h3{font-size:1.05em;margin:1.2em 0 .4em}
.meta{color:#57606a;margin:0 0 1em}.note{background:#fff8c5;border:1px solid #e9d66b;border-radius:6px;
 padding:6px 12px;margin:6px 0}
table{border-collapse:collapse;margin:.6em 0 .3em;font-size:.92em;font-variant-numeric:tabular-nums}
th,td{padding:5px 10px;text-align:right;white-space:nowrap}th{border-bottom:1.5px solid #1f2328;
 font-weight:600}thead tr:first-child th{border-top:1.5px solid #1f2328}
tbody tr:last-child td{border-bottom:1.5px solid #1f2328}td.name,th.name{text-align:left}
td.p{text-align:left;color:#57606a}td.paper{color:#57606a}th.sub{font-weight:400;color:#57606a;
 border-bottom:1px solid #8c959f}tr.ceiling td{border-top:1px solid #8c959f;font-style:italic}
tr.notrun td.ours{color:#8c959f;font-style:italic}tr.null td{color:#57606a}
tr.firstnull td{border-top:1px solid #8c959f}b{font-weight:700}.sig{color:#cf222e;font-weight:600}
caption{caption-side:top;text-align:left;color:#1f2328;padding:0 0 6px;font-size:.95em;max-width:1100px;
 white-space:normal}caption .more{color:#57606a}
.foot{font-size:.85em;color:#57606a;margin:0 0 1em}.fig{margin:.8em 0}.fig img{max-width:100%;height:auto;
 border:1px solid #eaeef2;border-radius:4px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:14px}
.card{border:1px solid #d8dee4;border-radius:6px;padding:8px 10px}.card h3{margin:.1em 0 .4em}
.card img{width:100%;height:auto}.card img.sample{image-rendering:pixelated;margin-bottom:6px}
.card .foot{margin:0 0 4px}caption{color:#57606a}.muted{color:#8c959f;font-style:italic}
""".strip()


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def html_table(result: TableResult) -> str:
    out = [f'<table id="table-{result.number}">',
           f"<caption>{_e(caption_details(result))}</caption>",
           '<thead><tr><th class=name rowspan=2>Method</th><th rowspan=2>n</th>']
    out += [f"<th colspan=2>{_e(METRIC_NAMES[m])}</th>" for m in METRICS]
    out.append(f'<th class=name rowspan=2>{_e(P_HEADER)}</th>')
    distances = distance_columns(result)
    out += [f"<th rowspan=2>{_e(distance_header(m))}</th>" for m in distances]
    out.append("</tr><tr>")
    out += ["<th class=sub>ours</th><th class=sub>paper</th>" for _ in METRICS]
    out.append("</tr></thead><tbody>")
    for row in result.all_rows:
        cls = "ceiling" if row.ceiling else ("null" + (" firstnull" if row is result.nulls[0] else "")
                                             if row.null else ("notrun" if row.n == 0 else ""))
        cells = [f"<td class=name>{_e(row_name(row))}</td><td>{row.n}</td>"]
        for m in METRICS:
            text = _e(cell_text(row, m))
            cells.append(f"<td class=ours>{'<b>' + text + '</b>' if m in row.best else text}</td>"
                         f"<td class=paper>{_e(published_text(row, m))}</td>")
        p = _e(row_p_text(row, result.alpha)).replace(SIG_MARK, f"<span class=sig>{SIG_MARK}</span>")
        cells.append(f"<td class=p>{p}</td>")
        for m in distances:
            text = _e(distance_text(row, m))
            cells.append(f"<td class=ours>{'<b>' + text + '</b>' if m in row.best else text}</td>")
        out.append(f"<tr class='{cls}'>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    notes = footnotes(result)
    if notes:
        out.append("<div class=foot>" + "<br>".join(f"{_e(m)} {_e(t)}" for m, t in notes) + "</div>")
    return "\n".join(out)


@dataclass
class Figures:
    """Images for the HTML page, as ``data:image/png;base64,...`` URIs."""

    bars: dict[int, str] = field(default_factory=dict)  # table number → bar chart
    losses: list[tuple[str, str, str]] = field(default_factory=list)  # (row name, caption, chart)
    #: (row name, caption, [(image caption, image)])
    samples: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)


def html_page(meta: ReportMeta, results: list[TableResult], figures: Figures) -> str:
    body = [f"<h1>cgbench report: {_e(meta.name)}</h1>",
            f"<p class=meta>Runs from {_e(meta.source)}"
            + (f" in <code>{_e(meta.store)}</code>" if meta.store else "") + ".</p>",
            f"<p class=meta>{_e(FLOOR_EXPLAINED)}</p>"]
    body += [f"<div class=note>{_e(n)}</div>" for n in meta.notes]
    for result in results:
        body.append(f"<h2>Table {result.number}: {_e(result.table.title)}</h2>")
        body.append(html_table(result))
        if result.number in figures.bars:
            body.append(f'<div class=fig><img alt="Table {result.number}: scores with 95% intervals" '
                        f'src="{figures.bars[result.number]}"></div>')
    if figures.losses:
        body.append("<h2>Training losses (mean over seeds)</h2><div class=grid>")
        body += [f'<div class=card><h3>{_e(name)}</h3><p class=foot>{_e(cap)}</p>'
                 f'<img alt="losses of {_e(name)}" src="{uri}"></div>' for name, cap, uri in figures.losses]
        body.append("</div>")
    if figures.samples:
        body.append("<h2>Sample translations (one run per row)</h2><div class=grid>")
        for name, cap, images in figures.samples:
            body.append(f'<div class=card><h3>{_e(name)}</h3><p class=foot>{_e(cap)}</p>')
            body += [f'<p class=foot>{_e(icap)}</p><img class=sample alt="{_e(name)}: {_e(icap)}" src="{uri}">'
                     for icap, uri in images]
            body.append("</div>")
        body.append("</div>")
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>cgbench report: {_e(meta.name)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def direction_name(direction: str) -> str:
    return DIRECTIONS.get(direction, direction)
