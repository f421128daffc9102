"""The report of an experiment or a sweep: its runs read (:mod:`~cgbench.report.runs`), the paper's
tables filled (:mod:`~cgbench.report.tables`) and judged (:mod:`~cgbench.report.verdicts`), the
figures drawn, written as Markdown, LaTeX, CSV, HTML and the claims' CSV, and logged to MLflow."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import quote, unquote, urlparse

from cgbench.errors import CgbenchError
from cgbench.paths import make_folder
from cgbench.protocol import REPORT_METHOD, Tags
from cgbench.report import page, render, study, verdicts
from cgbench.report.cells import ReportMeta
from cgbench.report.figures import Figures, figures_for
from cgbench.report.paper import KNOWN_ROWS, TABLES, PaperRow
from cgbench.report.runs import (
    base_row, chosen_records, external, fcn_ladder, ground_truths, null_records, select_runs,
)
from cgbench.report.tables import RunRecord, TableResult, fill_table
from cgbench.tracking import RunTracker, client_for

ALL_TABLES = (2, 3, 4, 5)
#: The report's files: format → how its file name ends.
FORMATS: dict[str, str] = {"md": ".md", "tex": ".tex", "csv": ".csv", "html": ".html", "claims": ".claims.csv"}


@dataclass
class Report:
    name: str
    tables: list[TableResult]
    markdown: str
    latex: str
    csv: str
    html: str
    meta: ReportMeta
    claims_csv: str = ""  # one line per claim and metric, with its verdict (render.claims_csv_text)
    paths: dict[str, Path] = field(default_factory=dict)  # format → written file
    run_id: str | None = None  # the MLflow "report" run holding the files as artifacts
    runs: list[RunRecord] = field(default_factory=list)  # the runs that went into the tables
    table_1: study.StudyTable | None = None  # the perceptual study, when asked for

    @property
    def files(self) -> list[Path]:
        """The written files, in the order md, tex, csv, html, claims.csv."""
        return [self.paths[ext] for ext in FORMATS if ext in self.paths]

    @property
    def verdicts(self) -> str:
        """What the runs show about the paper's claims, table by table, in plain words."""
        return verdicts.plain_text(self.tables)


# --- the report ----------------------------------------------------------------------------------------


def parse_tables(value: str | int | Iterable[int | str]) -> tuple[int, ...]:
    """'all' | 2 | '2,4' | [2, 3] → sorted table numbers; unknown numbers are an error."""
    if isinstance(value, (str, int)):
        value = ALL_TABLES if str(value).strip().lower() == "all" else str(value).split(",")
    out = []
    for v in value:
        text = str(v).strip()
        if text.lower() == "all":
            out += ALL_TABLES
            continue
        if not text.isdigit() or int(text) not in (study.NUMBER, *TABLES):
            raise CgbenchError(f"unknown table {text!r}; choose from 1, 2, 3, 4, 5 or all (2-5)")
        out.append(int(text))
    return tuple(sorted(set(out)))


def store_name(uri: str, cwd: Path | None = None) -> str:
    """The MLflow store as a report names it: a local store (sqlite database, file store) by its
    path relative to the working directory, or by its file name when it lies elsewhere; a
    remote store by its URI without credentials. Never an absolute path of this machine."""
    parsed = urlparse(uri)
    if parsed.scheme in ("sqlite", "file", ""):
        raw = unquote(parsed.path[1:] if parsed.scheme == "sqlite" else parsed.path or uri)  # sqlite:///rel, ////abs
        if not raw or raw == ":memory:":
            return uri
        path = Path(raw).resolve()
        base = (cwd or Path.cwd()).resolve()
        shown = path.relative_to(base).as_posix() if path.is_relative_to(base) else path.name
        return f"sqlite:///{shown}" if parsed.scheme == "sqlite" else shown
    netloc = parsed.hostname or ""
    if parsed.port:
        netloc += f":{parsed.port}"
    return parsed._replace(netloc=netloc).geturl()


#: The longest file name stem: a file name holds 255 bytes, and the longest ending is ".claims.csv".
MAX_STEM_BYTES = 255 - len(FORMATS["claims"])


def file_stem(name: str) -> str:
    """The report's file name stem for ``name``, reversible: letters and digits of any script,
    ``.``, ``_``, ``-`` and spaces kept, every other character (``/``, ``%``, controls) and a
    leading ``.`` percent-encoded as UTF-8 bytes (``urllib.parse.unquote`` gives the name back).
    A stem too long for a file name is cut and ends with a digest of the whole name instead."""
    stem = "".join(c if c.isalnum() or c in "._- " else quote(c, safe="") for c in name)
    stem = ("%2E" + stem[1:] if stem.startswith(".") else stem) if name.strip() else "report"
    if len(stem.encode()) > MAX_STEM_BYTES:
        cut = stem.encode()[:MAX_STEM_BYTES - 17].decode(errors="ignore")
        stem = f"{cut}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    return stem




def build_report(
    tracking_uri: str | None = None,
    experiment: str | None = None,
    sweep_run_id: str | None = None,
    tables: str | Iterable[int | str] = ALL_TABLES,
    out_dir: str | Path | None = "reports",
    name: str | None = None,
    log_to_mlflow: bool = True,
    figures: bool = True,
    echo: Callable[[str], None] | None = None,
    split_settings: bool = False,
) -> Report:
    """Build the report of an experiment (default ``cgbench``) or of a sweep's children.

    Writes ``<out_dir>/<name>.{md,tex,csv,html}`` and ``<name>.claims.csv`` (every claim of the
    paper the tables test, with its verdict; ``out_dir=None``: write nothing) and, with
    ``log_to_mlflow``, logs them as artifacts of a new run tagged ``cgbench.method=report`` in the
    same experiment. Raises :class:`CgbenchError` when there is nothing to report or the runs mix
    datasets, presets, precisions or data preparations, or runs of one row differ in a training
    setting (``split_settings``: each setting is shown as a row of its own instead).
    """
    numbers = parse_tables(tables)
    paper_numbers = [n for n in numbers if n in TABLES]  # all but Table 1, the perceptual study (report/study.py)
    client = client_for(tracking_uri)
    exp_name, source, default_name, runs = select_runs(client, experiment, sweep_run_id)
    table_1 = study.fill(runs, source) if study.NUMBER in numbers else None
    records, notes = chosen_records(runs, source, paper_numbers, split_settings)
    results = _filled_tables(client, records, paper_numbers, notes)
    report_name = name or default_name
    meta = ReportMeta(report_name, source, store_name(tracking_uri or client.tracking_uri), notes)
    figs = figures_for(client, results) if figures else Figures()
    report = Report(
        name=report_name, tables=results, markdown=render.markdown(meta, results), latex=render.latex(meta, results),
        csv=render.csv_text(results), html=page.html_page(meta, results, figs), meta=meta,
        claims_csv=render.claims_csv_text(results), runs=records,
    )
    if table_1 is not None:
        study.add_to(report, table_1)
    _write_and_log(report, out_dir, tracking_uri if log_to_mlflow else False, exp_name, source, numbers,
                   sweep_run_id)
    if echo is not None:
        echo(report.markdown)
    return report




def _filled_tables(client, records: list[RunRecord], paper_numbers: list[int], notes: list[str]) -> list[TableResult]:
    """Tables 2-5 filled with ``records``, their ceiling (ground truth), floor (null rows) and the
    rows scored outside cgbench."""
    gts = ground_truths(client, records)
    nulls = null_records(client, records)
    if records and not nulls:
        notes.append("no null rows are recorded for these data and this FCN, so the tables show no floor: "
                     "record them with cgbench eval --nulls")
    outside = tuple(PaperRow(key, f"{key} (scored from {kind})", None) for key, kind in dict(
        (r.row, r.tags.get(Tags.SOURCE, "outside")) for r in records if external(r)).items())
    # a sweep's own rows (a spec row named other than the paper's, e.g. a setting's variant)
    outside += tuple(PaperRow(key, key, None) for key in dict.fromkeys(
        r.row for r in records if not external(r) and base_row(r) not in KNOWN_ROWS))
    results = [fill_table(TABLES[n], records, gts if TABLES[n].direction == "labels2photo" else (), nulls=nulls,
                          outside=outside + _split_rows(TABLES[n], records)) for n in paper_numbers]
    ladder = fcn_ladder(client, records)
    for result in results:
        if result.table.direction == "labels2photo":
            result.ladder = ladder
    return results




def _split_rows(table, records: list[RunRecord]) -> tuple[PaperRow, ...]:
    """The rows that settings split off ``table``'s rows (``--split-settings``), each named by its
    row's name in the table and the setting, e.g. "CycleGAN (32 px)"."""
    names = {r.key: r.name for r in (*table.rows, *table.extra_rows)}
    split = {r.row: base_row(r) for r in records if r.row != base_row(r) and base_row(r) in names}
    return tuple(PaperRow(row, names[base] + row[len(base):], None) for row, base in split.items())


def _write_and_log(report: Report, out_dir: str | Path | None, tracking_uri: str | None | bool, exp_name: str,
                   source: str, numbers: tuple[int, ...], sweep_run_id: str | None) -> None:
    """The report's files into ``out_dir`` (None: nowhere) and, unless ``tracking_uri`` is False,
    into a report run of the experiment."""
    texts = {"md": report.markdown, "tex": report.latex, "csv": report.csv, "html": report.html,
             "claims": report.claims_csv}
    with tempfile.TemporaryDirectory() as tmpdir:
        folder = make_folder(out_dir if out_dir is not None else tmpdir, "the report folder")
        for ext, ending in FORMATS.items():
            path = folder / f"{file_stem(report.name)}{ending}"
            try:
                path.write_text(texts[ext], encoding="utf-8")
            except OSError as err:
                raise CgbenchError(f"cannot write {path} ({err.strerror}); pick another --out") from None
            report.paths[ext] = path
        if tracking_uri is not False:
            tracker = RunTracker.create(tracking_uri, exp_name, f"report-{report.name}", {
                Tags.METHOD: REPORT_METHOD,
                Tags.REPORT_SOURCE: source,
                Tags.REPORT_TABLES: ",".join(map(str, numbers)),
                Tags.REPORT_RUNS: str(len(report.runs)),
                **({Tags.REPORT_SWEEP: sweep_run_id} if sweep_run_id else {}),
            })
            with tracker.ending():
                for ext in FORMATS:
                    tracker.log_file(report.paths[ext], "report")
            report.run_id = tracker.run_id
        if out_dir is None:
            report.paths = {}
