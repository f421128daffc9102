"""Which runs make the tables, read from MLflow: the finished, evaluated row runs of an experiment
or of a sweep, one per row and seed, never mixing settings; the null rows (the floor) and the
ground truth (the ceiling) of their data and evaluator FCN.

Which runs count: FINISHED runs with a ``cgbench.row`` tag and evaluation metrics
(``eval/labels2photo/*`` and/or ``eval/photo2labels/*``), either all such runs of an experiment or the
children of a sweep (``mlflow.parentRunId``). Report runs (``cgbench.method=report``) and FCN runs
are never rows. Runs of different datasets or presets are never mixed: that is an error; so are
runs of one row in different training settings, unless each setting is shown as a row of its own.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any, Callable, Sequence

from cgbench.errors import CgbenchError
from cgbench.protocol import (
    EXTERNAL_METHOD, FCN_METHOD, GROUND_TRUTH_PREFIX, LADDER_PREFIX, NULL_METHOD, NULL_ROWS, REPORT_METHOD,
    Tags,
)
from cgbench.report.paper import DIRECTIONS, KNOWN_ROWS, METRICS, TABLES, setting_words
from cgbench.report.tables import FCN_TAG, RunRecord
from cgbench.tracking import get_run

DEFAULT_EXPERIMENT = "cgbench"


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
        run_id=run.info.run_id, name=tags.get("mlflow.runName", run.info.run_id), row=tags.get(Tags.ROW, ""),
        seed=tags.get(Tags.SEED, ""), metrics=dict(run.data.metrics), tags=dict(tags),
        dataset=tags.get(Tags.DATASET, ""), digest=tags.get(Tags.DATASET_DIGEST, ""),
        preset=tags.get(Tags.PRESET, ""),
        image_size=tags.get(Tags.IMAGE_SIZE, run.data.params.get("image_size", "")),
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


def one_per_seed(runs, row_of: Callable[[Any], str]) -> tuple[list, list]:
    """(the newest run of each (row, seed), the older copies): a seed counts once, however many
    runs repeat it. Runs without a seed (rows scored outside cgbench) are all kept. ``row_of``
    gives a run's row (a row split by setting gives each setting a row of its own)."""
    kept, copies, seen = [], [], set()
    for run in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id), reverse=True):
        key = (row_of(run), run.data.tags.get(Tags.SEED, ""))
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
        if tags.get(Tags.METHOD) in (REPORT_METHOD, FCN_METHOD, NULL_METHOD) or not tags.get(Tags.ROW):
            continue
        record = _record(run)
        (evaluated if _evaluated(record) else waiting).append(record)
    return evaluated, waiting


def external(record: RunRecord) -> bool:
    """A row scored from images or a checkpoint made outside cgbench (cgbench eval --images/--checkpoint)."""
    return record.tags.get(Tags.METHOD) == EXTERNAL_METHOD


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
    return record.tags.get(Tags.PRECISION, "fp32")


def prep(record: RunRecord) -> str:
    """The run's data preparation (runs from before the key used ``clean``)."""
    return record.tags.get(Tags.PREP, "clean")


def null_records(client, records: Sequence[RunRecord]) -> list[RunRecord]:
    """The null translators' runs for the data, image size and evaluator FCNs of ``records``
    (recorded once per dataset digest, image size and FCN, in any experiment): the newest of each
    null row and FCN, so that each trained run is held to the floor its own FCN scored."""
    if not records or not records[0].digest:
        return []
    digest, size, preparation = records[0].digest, records[0].image_size, prep(records[0])
    runs = _all_runs(client, [e.experiment_id for e in client.search_experiments()],
                     f"tags.`{Tags.METHOD}` = '{NULL_METHOD}' and tags.`{Tags.DATASET_DIGEST}` = "
                     f"'{digest}' and attributes.status = 'FINISHED'")
    fcns = {r.tags.get(FCN_TAG) for r in records} - {None}
    direction_of = {row: d for d, rows in NULL_ROWS.items() for row in rows}
    out, seen = [], set()
    for run in sorted(runs, key=lambda r: r.info.start_time, reverse=True):
        record = _record(run)
        if (size and record.image_size != size) or prep(record) != preparation or record.row not in direction_of:
            continue
        fcn = record.tags.get(FCN_TAG)
        if fcn is not None and fcns and fcn not in fcns:
            continue  # scored by another FCN than the trained rows
        key = (record.row, record.scored_by(direction_of[record.row]))
        if key not in seen:  # the newest of each row and FCN
            seen.add(key)
            out.append(record)
    return out


def ground_truths(client, records: Sequence[RunRecord]) -> list[dict[str, float]]:
    """The FCN ceiling, one entry per distinct evaluator FCN: from the scored runs, else from the
    finished FCN runs trained on the same data."""
    by_fcn: dict[str, dict[str, float]] = OrderedDict()
    for r in records:
        gt = {m: r.metrics[f"{GROUND_TRUTH_PREFIX}/{m}"] for m in METRICS if f"{GROUND_TRUTH_PREFIX}/{m}" in r.metrics}
        if len(gt) == len(METRICS):
            key = r.tags.get(FCN_TAG) or repr(sorted(gt.items()))
            by_fcn.setdefault(key, gt)
    if by_fcn or not records:
        return list(by_fcn.values())
    digest = records[0].digest
    if not digest:
        return []
    fcn_runs = _all_runs(client, [e.experiment_id for e in client.search_experiments()],
                         f"tags.`{Tags.METHOD}` = '{FCN_METHOD}' and tags.`{Tags.DATASET_DIGEST}` = "
                         f"'{digest}' and attributes.status = 'FINISHED'")
    out = []
    for run in fcn_runs:
        m = run.data.metrics
        if all(f"{GROUND_TRUTH_PREFIX}/{k}" in m for k in METRICS):
            out.append({k: m[f"{GROUND_TRUTH_PREFIX}/{k}"] for k in METRICS})
    return out



def base_row(record: RunRecord) -> str:
    """The row a run was made for (its ``cgbench.row``), also when a split setting renamed it."""
    return record.tags.get(Tags.ROW, record.row)


def settings_apart(records: Sequence[RunRecord], source: str, split: bool) -> list[RunRecord]:
    """Runs of one row that differ in a training setting (those a table's caption reports: image
    size, widths, blocks, upsampling, batch, lr, length) are not repeats of one another, and one
    row cannot average them: refused in one line naming the values and the runs, or (``split``)
    each setting made a row of its own, named by what differs (``cyclegan (32 px)``)."""
    by_row: dict[str, list[RunRecord]] = {}
    for r in records:
        by_row.setdefault(r.row, []).append(r)
    out = []
    for row, group in by_row.items():
        settings = {r.run_id: setting_words(r.params) for r in group}
        known = [s for s in settings.values() if s is not None]
        differing = [k for k in (known[0] if known else {}) if len({s[k] for s in known}) > 1]
        if not differing:
            out += group
            continue
        kinds: dict[str, list[str]] = {}
        for r in group:
            words = settings[r.run_id]
            kinds.setdefault(", ".join(words[k] for k in differing) if words else "setting not recorded",
                             []).append(r.run_id)
        if not split:
            desc = "; ".join(f"{k}: {', '.join(i[:8] for i in ids[:4])}{' ...' if len(ids) > 4 else ''}"
                             for k, ids in sorted(kinds.items()))
            raise CgbenchError(f"the runs of row {row!r} in {source} differ in setting ({desc}); runs of other settings "
                               "are not repeats: show each setting as a row of its own with --split-settings, or "
                               "keep each setting in its own --experiment")
        name_of = {i: kind for kind, ids in kinds.items() for i in ids}
        out += [dataclasses.replace(r, row=f"{row} ({name_of[r.run_id]})") for r in group]
    return out


def chosen_records(runs, source: str, paper_numbers: list[int],
                   split_settings: bool = False) -> tuple[list[RunRecord], list[str]]:
    """The evaluated row runs of Tables 2-5 (one per row, setting and seed), checked not to mix
    settings (``split_settings``: a row's settings become rows of their own), and notes on what is
    left out."""
    records, waiting = _row_runs(runs) if paper_numbers else ([], [])
    if paper_numbers and not records:
        hint = (f" ({len(waiting)} finished run(s) are not evaluated yet: cgbench eval --run RUN_ID)"
                if waiting else " (train with cgbench run, then score with cgbench eval --run RUN_ID)")
        raise CgbenchError(f"no finished, evaluated runs in {source}{hint}")
    check_not_mixed(records, source)
    records_by_id = {r.run_id: r for r in settings_apart(records, source, split_settings)}
    kept, copies = one_per_seed([run for run in runs if run.info.run_id in records_by_id],
                                lambda run: records_by_id[run.info.run_id].row)
    records = [records_by_id[run.info.run_id] for run in kept]
    notes = []
    split = sorted({r.row for r in records if r.row != base_row(r)})
    if split:
        notes.append(f"runs of one row that differ in setting are shown as rows of their own: {', '.join(split)}")
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
        if base_row(r) not in shown and base_row(r) in KNOWN_ROWS and not external(r):
            others[r.row] = others.get(r.row, 0) + 1
    if others:
        what = ", ".join(f"{k} ({v} run{'s' if v > 1 else ''})" for k, v in sorted(others.items()))
        notes.append(f"runs of rows not in the selected tables are not shown: {what}")
    return records, notes


def fcn_ladder(client, records: Sequence[RunRecord]) -> str:
    """One sentence on the evaluator FCN's degradation ladder (recorded by ``cgbench fcn train``),
    when every row was scored by the same FCN; empty otherwise."""
    sources = {r.tags.get(FCN_TAG, "") for r in records} - {""}
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
    verdict = ("it falls on every rung" if tags.get(Tags.FCN_LADDER_FALLS) == "true" else
               f"it does not fall for {tags.get(Tags.FCN_LADDER_FLAT, '?')}: there the FCN cannot see the damage")
    return (f"The FCN's degradation ladder (real photos, per-pixel acc.): clean {m[f'{GROUND_TRUTH_PREFIX}/per_pixel_acc']:.3f}, "
            + ", ".join(steps) + f"; {verdict}.")

