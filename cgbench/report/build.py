"""Read runs from MLflow, fill the paper's tables, draw the figures, write and log the report.

Which runs count: FINISHED runs with a ``cgbench.row`` tag and evaluation metrics
(``eval/labels2photo/*`` and/or ``eval/photo2labels/*``), either all such runs of an experiment or the
children of a sweep (``mlflow.parentRunId``). Report runs (``cgbench.method=report``) and FCN runs
are never rows. Runs of different datasets or presets are never mixed: that is an error.
"""

from __future__ import annotations

import base64
import io
import math
import re
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence
from urllib.parse import unquote, urlparse

from cgbench.errors import CgbenchError
from cgbench.paths import make_folder
from cgbench.report import render, study
from cgbench.report.aggregate import RunRecord, TableResult, fill_table
from cgbench.protocol import (
    EXTERNAL_METHOD, FCN_METHOD, GROUND_TRUTH_PREFIX, LADDER_PREFIX, NULL_METHOD, REPORT_METHOD, TAG_PREFIX,
    metric_prefix,
)
from cgbench.report.paper import DIRECTIONS, KNOWN_ROWS, METRIC_NAMES, METRICS, TABLES, PaperRow
from cgbench.tracking import RunTracker, client_for, get_run

DEFAULT_EXPERIMENT = "cgbench"
ALL_TABLES = (2, 3, 4, 5)
FORMATS = ("md", "tex", "csv", "html")


def sample_rows(direction: str) -> str:
    """What the rows of an evaluator's ``samples.png`` show (the built-in evaluators' grids)."""
    from evaluators.base import discover

    built_in = {"labels2photo": "fcn", "photo2labels": "seg"}  # whose samples.png the report shows
    rows = getattr(discover().get(built_in.get(direction, "")), "sample_rows", None)
    if not rows:
        return "the evaluator's sample grid"
    return "top to bottom: " + ", ".join((*rows, "ground truth"))


@dataclass
class Report:
    name: str
    tables: list[TableResult]
    markdown: str
    latex: str
    csv: str
    html: str
    meta: render.ReportMeta
    paths: dict[str, Path] = field(default_factory=dict)  # format → written file
    run_id: str | None = None  # the MLflow "report" run holding the files as artifacts
    runs: list[RunRecord] = field(default_factory=list)  # the runs that went into the tables
    table_1: study.StudyTable | None = None  # the perceptual study, when asked for

    @property
    def files(self) -> list[Path]:
        """The written files, in the order md, tex, csv, html."""
        return [self.paths[ext] for ext in FORMATS if ext in self.paths]


# --- choosing runs -----------------------------------------------------------------------------


def _all_runs(client, experiment_ids: list[str], filter_string: str):
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _record(run) -> RunRecord:
    tags = run.data.tags
    return RunRecord(
        run_id=run.info.run_id, name=tags.get("mlflow.runName", run.info.run_id), row=tags.get(TAG_PREFIX + "row", ""),
        seed=tags.get(TAG_PREFIX + "seed", ""), metrics=dict(run.data.metrics), tags=dict(tags),
        dataset=tags.get(TAG_PREFIX + "dataset", ""), digest=tags.get(TAG_PREFIX + "dataset_digest", ""),
        preset=tags.get(TAG_PREFIX + "preset", ""),
        image_size=tags.get(TAG_PREFIX + "image_size", run.data.params.get("image_size", "")),
        params=dict(run.data.params),
    )


def _evaluated(record: RunRecord) -> bool:
    return any(record.scores(d) is not None for d in DIRECTIONS)


def select_runs(client, experiment: str | None, sweep_run_id: str | None):
    """(experiment name, source text, default report name, the finished runs to consider)."""
    if experiment and sweep_run_id:
        raise CgbenchError("give either --experiment NAME or --sweep RUN_ID, not both")
    if sweep_run_id:
        parent = get_run(client, sweep_run_id)
        exp = client.get_experiment(parent.info.experiment_id)
        sweep_name = parent.data.tags.get("mlflow.runName", sweep_run_id)
        runs = _all_runs(client, [exp.experiment_id],
                         f"tags.`mlflow.parentRunId` = '{sweep_run_id}' and attributes.status = 'FINISHED'")
        source = f"sweep {sweep_name} (run {sweep_run_id}) of experiment '{exp.name}'"
        return exp.name, source, sweep_name, runs
    name = experiment or DEFAULT_EXPERIMENT
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage == "deleted":
        raise CgbenchError(f"no MLflow experiment named {name!r} in {client.tracking_uri}; pass --experiment NAME "
                           "or --tracking-uri URI (list experiments with `mlflow ui`)")
    runs = _all_runs(client, [exp.experiment_id], "attributes.status = 'FINISHED'")
    return exp.name, f"experiment '{exp.name}'", exp.name, runs


def one_per_seed(runs) -> tuple[list, list]:
    """(the newest run of each (row, seed), the older copies): a seed counts once, however many
    runs repeat it. Runs without a seed (rows scored outside cgbench) are all kept."""
    kept, copies, seen = [], [], set()
    for run in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id), reverse=True):
        tags = run.data.tags
        key = (tags.get(TAG_PREFIX + "row", ""), tags.get(TAG_PREFIX + "seed", ""))
        if key[1] and key in seen:
            copies.append(run)
            continue
        seen.add(key)
        kept.append(run)
    return kept, copies


def _row_runs(runs) -> tuple[list[RunRecord], list[RunRecord]]:
    """(evaluated row runs, finished row runs without evaluation metrics)."""
    evaluated, waiting = [], []
    for run in runs:
        tags = run.data.tags
        if tags.get(TAG_PREFIX + "method") in (REPORT_METHOD, FCN_METHOD, NULL_METHOD) or not tags.get(TAG_PREFIX + "row"):
            continue
        record = _record(run)
        (evaluated if _evaluated(record) else waiting).append(record)
    return evaluated, waiting


def external(record: RunRecord) -> bool:
    """A row scored from images or a checkpoint made outside cgbench (cgbench eval --images/--checkpoint)."""
    return record.tags.get(TAG_PREFIX + "method") == EXTERNAL_METHOD


def check_not_mixed(records: Sequence[RunRecord], source: str) -> None:
    """One table, one setting: the same data, preset, precision and data preparation; rows made
    outside cgbench (no preset of ours) need only the same data."""
    digests = {r.digest for r in records}
    if len(digests) > 1 and any(external(r) for r in records):
        raise CgbenchError(f"the runs of {source} were scored on different data (digests "
                           f"{', '.join(sorted(d[:8] for d in digests))}); score every row on the same dataset")
    records = [r for r in records if not external(r)]
    kinds: dict[tuple[str, str, str], int] = {}
    for r in records:
        key = (r.dataset or "?", r.digest, r.preset or "?")
        kinds[key] = kinds.get(key, 0) + 1
    if len(kinds) > 1:
        desc = "; ".join(f"{d} (data {g[:8] or '?'}) / preset {p}: {n} runs"
                         for (d, g, p), n in sorted(kinds.items(), key=lambda kv: -kv[1]))
        raise CgbenchError(f"the runs of {source} mix datasets or presets ({desc}); a table must compare like with "
                           "like: report one sweep with --sweep RUN_ID, or keep each kind in its own --experiment")
    for what, value_of in (("precisions", precision), ("data preparations (prep)", prep)):
        groups: dict[str, list[str]] = {}
        for r in records:
            groups.setdefault(value_of(r), []).append(r.run_id)
        if len(groups) > 1:
            desc = "; ".join(f"{v}: {', '.join(i[:8] for i in ids[:4])}{' ...' if len(ids) > 4 else ''}"
                             for v, ids in sorted(groups.items()))
            raise CgbenchError(f"the runs of {source} mix {what} ({desc}); a table compares one setting only: "
                               "re-run the odd ones, or keep each kind in its own --experiment")


def precision(record: RunRecord) -> str:
    """The precision a run's forward passes ran in (runs from before the tag were fp32)."""
    return record.tags.get(TAG_PREFIX + "precision", "fp32")


def prep(record: RunRecord) -> str:
    """The run's data preparation (runs from before the key used ``clean``)."""
    return record.tags.get(TAG_PREFIX + "prep", "clean")


def null_records(client, records: Sequence[RunRecord]) -> list[RunRecord]:
    """The null translators' runs for the data, image size and evaluator FCN of ``records``
    (recorded once per dataset digest, image size and FCN, in any experiment)."""
    if not records or not records[0].digest:
        return []
    digest, size, preparation = records[0].digest, records[0].image_size, prep(records[0])
    runs = _all_runs(client, [e.experiment_id for e in client.search_experiments()],
                     f"tags.`{TAG_PREFIX}method` = '{NULL_METHOD}' and tags.`{TAG_PREFIX}dataset_digest` = "
                     f"'{digest}' and attributes.status = 'FINISHED'")
    fcns = {r.tags.get(TAG_PREFIX + "eval.fcn.fcn") for r in records} - {None}
    out = []
    for run in sorted(runs, key=lambda r: r.info.start_time, reverse=True):
        record = _record(run)
        if (size and record.image_size != size) or prep(record) != preparation:
            continue
        fcn = record.tags.get(TAG_PREFIX + "eval.fcn.fcn")
        if fcn is not None and fcns and fcn not in fcns:
            continue  # scored by another FCN than the trained rows
        if any(o.row == record.row for o in out):
            continue  # the newest of each row
        out.append(record)
    return out


def ground_truths(client, records: Sequence[RunRecord]) -> list[dict[str, float]]:
    """The FCN ceiling, one entry per distinct evaluator FCN: from the scored runs, else from the
    finished FCN runs trained on the same data."""
    by_fcn: dict[str, dict[str, float]] = OrderedDict()
    for r in records:
        gt = {m: r.metrics[f"{GROUND_TRUTH_PREFIX}/{m}"] for m in METRICS if f"{GROUND_TRUTH_PREFIX}/{m}" in r.metrics}
        if len(gt) == len(METRICS):
            key = r.tags.get(TAG_PREFIX + "eval.fcn.fcn") or repr(sorted(gt.items()))
            by_fcn.setdefault(key, gt)
    if by_fcn or not records:
        return list(by_fcn.values())
    digest = records[0].digest
    if not digest:
        return []
    fcn_runs = _all_runs(client, [e.experiment_id for e in client.search_experiments()],
                         f"tags.`{TAG_PREFIX}method` = '{FCN_METHOD}' and tags.`{TAG_PREFIX}dataset_digest` = "
                         f"'{digest}' and attributes.status = 'FINISHED'")
    out = []
    for run in fcn_runs:
        m = run.data.metrics
        if all(f"{GROUND_TRUTH_PREFIX}/{k}" in m for k in METRICS):
            out.append({k: m[f"{GROUND_TRUTH_PREFIX}/{k}"] for k in METRICS})
    return out


# --- figures -------------------------------------------------------------------------------------


def _png_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _short(name: str) -> str:
    return (name.replace("GAN + forward cycle", "GAN+fwd").replace("GAN + backward cycle", "GAN+bwd")
            .replace("Feature loss + GAN", "Feat.+GAN").replace("CycleGAN + identity", "CycleGAN+idt"))


def bar_chart(result: TableResult) -> str:
    """Our means with 95% intervals per row and metric, the paper's values as markers."""
    from matplotlib.figure import Figure

    rows = result.rows
    fig = Figure(figsize=(10.5, 3.3))
    axes = fig.subplots(1, len(METRICS), sharey=True)
    xs = list(range(len(rows)))
    for ax, m in zip(axes, METRICS):
        for x, row in zip(xs, rows):
            s = row.stats[m]
            if s.n == 0:
                ax.text(x, 0.01, "not run", rotation=90, ha="center", va="bottom", fontsize=7, color="#8c959f")
                continue
            color = "#0969da" if row.is_reference else ("#8c959f" if row.upper_bound else "#54aeff")
            err = None if math.isnan(s.ci) else [[min(s.ci, s.mean)], [s.ci]]
            ax.bar(x, s.mean, 0.7, color=color, yerr=err, capsize=3, ecolor="#24292f", linewidth=0)
        pub = [(x, r.published_value(m)) for x, r in zip(xs, rows) if r.published_value(m) is not None]
        if pub:
            ax.scatter([p[0] for p in pub], [p[1] for p in pub], marker="_", s=260, color="#cf222e", linewidths=2,
                       zorder=3, label="paper")
        gt = result.ground_truth
        if gt is not None and gt.stats[m].n:
            ax.axhline(gt.stats[m].mean, color="#1a7f37", linestyle="--", linewidth=1, label="ground truth (ours)")
        floor = result.floor(m)
        if not math.isnan(floor):
            ceiling = result.ceiling(m)
            ax.axhspan(floor, ceiling if not math.isnan(ceiling) else 1.0, color="#1a7f37", alpha=0.08, linewidth=0,
                       zorder=0, label="floor (best null) to ceiling")
            ax.axhline(floor, color="#9a6700", linestyle=":", linewidth=1.2, label="floor (best null)")
        ax.set_title(METRIC_NAMES[m], fontsize=10)
        ax.set_xticks(xs, [_short(r.name) for r in rows], rotation=35, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylim(0, 1)
    axes[0].set_ylabel("score (bars: ours, 95% CI)", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[-1].legend(handles, labels, fontsize=7, loc="upper right", frameon=False)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.91, bottom=0.25, wspace=0.08)
    return _png_uri(fig)


def _mean_history(client, runs: Sequence[RunRecord]) -> dict[str, tuple[list[int], list[float], list[float]]]:
    """loss key → (steps, mean over runs, std over runs), over the steps the runs recorded."""
    per_key: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        for key in sorted(k for k in run.metrics if k.startswith("loss/")):
            latest: dict[int, tuple[int, float]] = {}
            for m in client.get_metric_history(run.run_id, key):
                if m.step not in latest or m.timestamp >= latest[m.step][0]:
                    latest[m.step] = (m.timestamp, m.value)
            for step, (_, value) in latest.items():
                per_key.setdefault(key, {}).setdefault(step, []).append(value)
    out = {}
    for key, steps in per_key.items():
        xs = sorted(steps)
        vals = [steps[s] for s in xs]
        means = [sum(v) / len(v) for v in vals]
        if not any(abs(v) > 0 for v in means):
            continue  # a term the method has switched off is recorded as 0
        stds = [math.sqrt(sum((x - mu) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
                for v, mu in zip(vals, means)]
        out[key] = (xs, means, stds)
    return out


#: Loss terms in a fixed order, so a term has the same colour in every row's chart.
LOSS_ORDER = ("G_gan", "F_gan", "cycle_forward", "cycle_backward", "idt_G", "idt_F", "D_Y", "D_X")


def _loss_color(term: str) -> str:
    if term in LOSS_ORDER:
        return f"C{LOSS_ORDER.index(term)}"
    return f"C{(len(LOSS_ORDER) + sum(map(ord, term))) % 10}"


def loss_chart(client, name: str, runs: Sequence[RunRecord]) -> str | None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    histories = _mean_history(client, runs)
    if not histories:
        return None
    fig = Figure(figsize=(4.2, 2.6))
    ax = fig.subplots()
    for key, (xs, means, stds) in histories.items():
        term = key.removeprefix("loss/")
        ax.plot(xs, means, linewidth=1.2, label=term, color=_loss_color(term))
        if len(runs) > 1:
            ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=_loss_color(term), alpha=0.15, linewidth=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration", fontsize=9)
    ax.set_ylabel("loss", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7.5, ncol=2, frameon=False)
    fig.subplots_adjust(left=0.13, right=0.98, top=0.97, bottom=0.17)
    return _png_uri(fig)


def sample_image(client, run_id: str, direction: str) -> str | None:
    with tempfile.TemporaryDirectory() as tmpdir:
        try:
            path = Path(client.download_artifacts(run_id, f"{metric_prefix(direction)}/samples.png", tmpdir))
        except Exception:  # no such artifact (not evaluated that way, or an older run)
            return None
        if not path.is_file() or path.stat().st_size == 0:
            return None
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def figures_for(client, results: list[TableResult]) -> render.Figures:
    figures = render.Figures()
    for result in results:
        figures.bars[result.number] = bar_chart(result)
    rows: OrderedDict[str, tuple[str, list[RunRecord], set[str]]] = OrderedDict()
    for result in results:
        for row in result.rows:
            if row.runs:
                entry = rows.setdefault(row.key, (row.name, [], set()))
                known = {r.run_id for r in entry[1]}
                entry[1].extend(r for r in row.runs if r.run_id not in known)
                entry[2].add(result.table.direction)
    for key, (name, runs, directions) in rows.items():
        chart = loss_chart(client, name, runs)
        if chart:
            n = len(runs)
            cap = f"mean of {n} seed{'s' if n != 1 else ''}" + ("; band: ±1 std" if n > 1 else "")
            figures.losses.append((name, cap, chart))
    for key, (name, runs, directions) in rows.items():
        run = runs[0]  # the lowest seed
        images = [(f"{DIRECTIONS[d]}, {sample_rows(d)}", image) for d in DIRECTIONS
                  if d in directions and (image := sample_image(client, run.run_id, d))]
        if images:
            figures.samples.append((name, f"run {run.name} (seed {run.seed})", images))
    return figures


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


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "report"


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
) -> Report:
    """Build the report of an experiment (default ``cgbench``) or of a sweep's children.

    Writes ``<out_dir>/<name>.{md,tex,csv,html}`` (``out_dir=None``: write nothing) and, with
    ``log_to_mlflow``, logs them as artifacts of a new run tagged ``cgbench.method=report`` in the
    same experiment. Raises :class:`CgbenchError` when there is nothing to report or the runs mix
    datasets, presets, precisions or data preparations.
    """
    numbers = parse_tables(tables)
    paper_numbers = [n for n in numbers if n in TABLES]  # all but Table 1, the perceptual study (report/study.py)
    client = client_for(tracking_uri)
    exp_name, source, default_name, runs = select_runs(client, experiment, sweep_run_id)
    table_1 = study.fill(runs, source) if study.NUMBER in numbers else None
    records, notes = _chosen_records(runs, source, paper_numbers)
    results = _filled_tables(client, records, paper_numbers, notes)
    report_name = name or default_name
    meta = render.ReportMeta(report_name, source, store_name(tracking_uri or client.tracking_uri), notes)
    figs = figures_for(client, results) if figures else render.Figures()
    report = Report(
        name=report_name, tables=results, markdown=render.markdown(meta, results), latex=render.latex(meta, results),
        csv=render.csv_text(results), html=render.html_page(meta, results, figs), meta=meta, runs=records,
    )
    if table_1 is not None:
        study.add_to(report, table_1)
    _write_and_log(report, out_dir, tracking_uri if log_to_mlflow else False, exp_name, source, numbers,
                   sweep_run_id)
    if echo is not None:
        echo(report.markdown)
    return report


def _chosen_records(runs, source: str, paper_numbers: list[int]) -> tuple[list[RunRecord], list[str]]:
    """The evaluated row runs of Tables 2-5 (one per row and seed), checked not to mix settings, and
    notes on what is left out."""
    records, waiting = _row_runs(runs) if paper_numbers else ([], [])
    if paper_numbers and not records:
        hint = (f" ({len(waiting)} finished run(s) are not evaluated yet: cgbench eval --run RUN_ID)"
                if waiting else " (train with cgbench run, then score with cgbench eval --run RUN_ID)")
        raise CgbenchError(f"no finished, evaluated runs in {source}{hint}")
    check_not_mixed(records, source)
    records_by_id = {r.run_id: r for r in records}
    kept, copies = one_per_seed([run for run in runs if run.info.run_id in records_by_id])
    records = [records_by_id[run.info.run_id] for run in kept]
    notes = []
    if copies:
        ids = ", ".join(run.info.run_id[:8] for run in copies[:5]) + (" ..." if len(copies) > 5 else "")
        notes.append(f"{len(copies)} evaluated run(s) repeat a row and seed that is already counted and are left "
                     f"out (a seed counts once: the newest run of each is used): {ids}")
    if waiting:
        ids = ", ".join(r.run_id[:8] for r in waiting[:5]) + (" ..." if len(waiting) > 5 else "")
        notes.append(f"{len(waiting)} finished run(s) have no evaluation metrics and are left out "
                     f"(score them with cgbench eval --run RUN_ID): {ids}")
    shown = {r.key for n in paper_numbers for r in (*TABLES[n].rows, *TABLES[n].extra_rows)}
    others: dict[str, int] = {}
    for r in records:
        if r.row not in shown and r.row in KNOWN_ROWS and not external(r):
            others[r.row] = others.get(r.row, 0) + 1
    if others:
        what = ", ".join(f"{k} ({v} run{'s' if v > 1 else ''})" for k, v in sorted(others.items()))
        notes.append(f"runs of rows not in the selected tables are not shown: {what}")
    return records, notes


def _filled_tables(client, records: list[RunRecord], paper_numbers: list[int], notes: list[str]) -> list[TableResult]:
    """Tables 2-5 filled with ``records``, their ceiling (ground truth), floor (null rows) and the
    rows scored outside cgbench."""
    gts = ground_truths(client, records)
    nulls = null_records(client, records)
    if records and not nulls:
        notes.append("no null rows are recorded for these data and this FCN, so the tables show no floor: "
                     "record them with cgbench eval --nulls")
    outside = tuple(PaperRow(key, f"{key} (scored from {kind})", None) for key, kind in dict(
        (r.row, r.tags.get(TAG_PREFIX + "source", "outside")) for r in records if external(r)).items())
    # a sweep's own rows (a spec row named other than the paper's, e.g. a setting's variant)
    outside += tuple(PaperRow(key, key, None) for key in dict.fromkeys(
        r.row for r in records if not external(r) and r.row not in KNOWN_ROWS))
    results = [fill_table(TABLES[n], records, gts if TABLES[n].direction == "labels2photo" else (), nulls=nulls,
                          outside=outside) for n in paper_numbers]
    ladder = fcn_ladder(client, records)
    for result in results:
        if result.table.direction == "labels2photo":
            result.ladder = ladder
    return results


def fcn_ladder(client, records: Sequence[RunRecord]) -> str:
    """One sentence on the evaluator FCN's degradation ladder (recorded by ``cgbench fcn train``),
    when every row was scored by the same FCN; empty otherwise."""
    sources = {r.tags.get(TAG_PREFIX + "eval.fcn.fcn", "") for r in records} - {""}
    if len(sources) != 1 or not next(iter(sources)).startswith("run "):
        return ""
    try:
        run = client.get_run(next(iter(sources)).removeprefix("run "))
    except Exception:  # the FCN run was deleted
        return ""
    m, tags = run.data.metrics, run.data.tags
    hardest = (("blurred σ=4", "blur_4"), ("JPEG q5", "jpeg_5"), ("noise σ=50", "noise_50"), ("60% replaced", "replace_60"))
    steps = [f"{text} {m[key]:.3f}" for text, rung in hardest if (key := f"{LADDER_PREFIX}/{rung}/per_pixel_acc") in m]
    if not steps or f"{GROUND_TRUTH_PREFIX}/per_pixel_acc" not in m:
        return ""
    verdict = ("it falls on every rung" if tags.get(TAG_PREFIX + "fcn.ladder_falls") == "true" else
               f"it does not fall for {tags.get(TAG_PREFIX + 'fcn.ladder_flat', '?')}: there the FCN cannot see the damage")
    return (f"The FCN's degradation ladder (real photos, per-pixel acc.): clean {m[f'{GROUND_TRUTH_PREFIX}/per_pixel_acc']:.3f}, "
            + ", ".join(steps) + f"; {verdict}.")


def _write_and_log(report: Report, out_dir: str | Path | None, tracking_uri: str | None | bool, exp_name: str,
                   source: str, numbers: tuple[int, ...], sweep_run_id: str | None) -> None:
    """The four files into ``out_dir`` (None: nowhere) and, unless ``tracking_uri`` is False, into
    a report run of the experiment."""
    texts = {"md": report.markdown, "tex": report.latex, "csv": report.csv, "html": report.html}
    with tempfile.TemporaryDirectory() as tmpdir:
        folder = make_folder(out_dir if out_dir is not None else tmpdir, "the report folder")
        for ext in FORMATS:
            path = folder / f"{safe_name(report.name)}.{ext}"
            try:
                path.write_text(texts[ext], encoding="utf-8")
            except OSError as err:
                raise CgbenchError(f"cannot write {path} ({err.strerror}); pick another --out") from None
            report.paths[ext] = path
        if tracking_uri is not False:
            tracker = RunTracker.create(tracking_uri, exp_name, f"report-{report.name}", {
                TAG_PREFIX + "method": REPORT_METHOD,
                TAG_PREFIX + "report.source": source,
                TAG_PREFIX + "report.tables": ",".join(map(str, numbers)),
                TAG_PREFIX + "report.runs": str(len(report.runs)),
                **({TAG_PREFIX + "report.sweep": sweep_run_id} if sweep_run_id else {}),
            })
            with tracker.ending():
                for ext in FORMATS:
                    tracker.log_file(report.paths[ext], "report")
            report.run_id = tracker.run_id
        if out_dir is None:
            report.paths = {}
