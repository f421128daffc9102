"""Filled tables → one self-contained HTML page: each table with its verdict as a small coloured
grid (claims × metrics), the bar charts, loss curves and sample translations. Pure text."""

from __future__ import annotations

import html
import math

from cgbench.report import verdicts
from cgbench.report.cells import (
    FLOOR_EXPLAINED, P_HEADER, SIG_MARK, ReportMeta, caption_details, cell_text, distance_columns, distance_header,
    distance_text, footnotes, published_text, row_name, row_p_text,
)
from cgbench.report.figures import Figures
from cgbench.report.paper import METRIC_NAMES, METRICS
from cgbench.report.tables import TableResult

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
table.verdict td.v{text-align:center;font-weight:600;min-width:7em}table.verdict td.shown{background:#dafbe1;
 color:#116329}table.verdict td.contradicted{background:#ffebe9;color:#a40e26}
table.verdict td.notresolved{background:#eaeef2;color:#57606a}table.verdict td.notrun{color:#8c959f;
 font-weight:400;font-style:italic}
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


def _claim_title(claim: verdicts.Claim) -> str:
    """The numbers behind one cell of the verdict grid (shown on hover)."""
    c = claim.comparison
    if c is None or claim.p_holm is None:
        return claim.why or claim.verdict
    p = "n/a" if c.p is None or math.isnan(c.p) else f"{c.p:.3g}"
    return (f"difference {c.diff_mean:+.3f} ± {c.diff_ci():.3f} ({c.test}, n = {c.n}); p = {p}, "
            f"Holm-adjusted {claim.p_holm:.3g} over {claim.family} tests" + (f"; {claim.why}" if claim.why else ""))


def verdict_grid(result: TableResult) -> str:
    """The table's claims × metrics, coloured: green shown, red contradicted, grey not resolved."""
    judged = verdicts.claims(result)
    if not judged:
        return ""
    by_text: dict[str, dict[str, verdicts.Claim]] = {}
    for claim in judged:
        by_text.setdefault(claim.text, {})[claim.metric] = claim
    lines = verdicts.lines(result, judged)
    out = [f'<table class=verdict id="verdict-{result.number}">', f"<caption>{_e(lines[0])}</caption>",
           "<thead><tr><th class=name>Claim</th>" + "".join(f"<th>{_e(METRIC_NAMES[m])}</th>" for m in METRICS)
           + "</tr></thead><tbody>"]
    for text, cells in by_text.items():
        row = [f"<td class=name>{_e(text)}</td>"]
        for m in METRICS:
            claim = cells[m]
            row.append(f"<td class='v {claim.verdict.replace(' ', '')}' title='{_e(_claim_title(claim))}'>"
                       f"{_e(claim.verdict)}</td>")
        out.append("<tr>" + "".join(row) + "</tr>")
    out.append("</tbody></table>")
    out.append("<div class=foot>" + "<br>".join(_e(line) for line in lines[1:]) + "</div>")
    return "\n".join(out)


def html_page(meta: ReportMeta, results: list[TableResult], figures: Figures) -> str:
    body = [f"<h1>cgbench report: {_e(meta.name)}</h1>",
            f"<p class=meta>Runs from {_e(meta.source)}"
            + (f" in <code>{_e(meta.store)}</code>" if meta.store else "") + ".</p>",
            f"<p class=meta>{_e(FLOOR_EXPLAINED)}</p>"]
    body += [f"<div class=note>{_e(n)}</div>" for n in meta.notes]
    for result in results:
        body.append(f"<h2>Table {result.number}: {_e(result.table.title)}</h2>")
        body.append(html_table(result))
        body.append(verdict_grid(result))
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

