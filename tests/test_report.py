"""The report builder: statistics on known numbers, the paper's table layout, well-formed LaTeX,
tidy CSV, runs read from a real sqlite MLflow store, the CLI, and the HTML page in headless Chromium."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from conftest import HANG_SECONDS
from cgbench.errors import CgbenchError
from cgbench.report import aggregate, build_report, fill_table, page, render, welch_p
from cgbench.report.tables import RunRecord
from cgbench.report.build import store_name
from cgbench.report.paper import METRICS, TABLES
from cgbench.report.render import latex_escape
from cgbench.tracking import RunTracker, client_for

L2P = "eval/labels2photo"
P2L = "eval/photo2labels"
GT = "eval/ground_truth"


# --- statistics ----------------------------------------------------------------------------


def test_aggregate_known_numbers():
    s = aggregate([0.5, 0.6, 0.7])
    assert s.n == 3
    assert s.mean == pytest.approx(0.6)
    assert s.std == pytest.approx(0.1)
    assert s.ci == pytest.approx(stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3))
    assert s.ci == pytest.approx(0.2484, abs=1e-4)
    assert (s.low, s.high) == pytest.approx((0.6 - s.ci, 0.6 + s.ci))

    one = aggregate([0.42])
    assert (one.mean, one.n) == (0.42, 1) and math.isnan(one.std) and math.isnan(one.ci)
    none = aggregate([])
    assert none.n == 0 and math.isnan(none.mean)
    assert aggregate([0.2, float("nan"), 0.4]).n == 2  # NaNs are dropped, not averaged


def test_welch_p_matches_scipy():
    a, b = [0.52, 0.55, 0.49, 0.51], [0.40, 0.47, 0.44]
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_p(a, b) == pytest.approx(expected)
    # Welch's statistic by hand: t = (ma - mb) / sqrt(va/na + vb/nb)
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va / 4 + vb / 3)
    assert stats.ttest_ind(a, b, equal_var=False).statistic == pytest.approx(t)
    assert welch_p([0.5], b) is None and welch_p(a, []) is None  # n<2: not testable
    assert welch_p([0.3, 0.3], [0.3, 0.3]) == 1.0
    assert welch_p([0.3, 0.3], [0.4, 0.4]) == 0.0  # no spread, different constants: t is infinite (scipy: p 0)


# --- tables from records (pure) ------------------------------------------------------------------


def record(row: str, seed: int, l2p=None, p2l=None, gt=None, **tags) -> RunRecord:
    metrics = {}
    for prefix, values in ((L2P, l2p), (P2L, p2l), (GT, gt)):
        if values is not None:
            metrics.update({f"{prefix}/{m}": v for m, v in zip(METRICS, values)})
    return RunRecord(f"{row}-{seed}", f"{row}-seed{seed}", row, str(seed), metrics, tags,
                     dataset="synthcity", digest="abc123", preset="tiny")


def test_table_layout_rows_names_published_values():
    runs = [record("cyclegan", s, l2p=(0.50 + 0.01 * s, 0.15, 0.10)) for s in range(3)]
    runs += [record("simgan", s, l2p=(0.30 + 0.03 * s, 0.16 + 0.01 * s, 0.05)) for s in range(2)]
    runs += [record("bigan", s, l2p=(0.20 + 0.02 * (s - 5), 0.05, 0.02)) for s in (5, 6)]  # seeds CycleGAN lacks
    runs += [record("pix2pix", 0, l2p=(0.9, 0.9, 0.9))]
    t2 = fill_table(TABLES[2], runs, ground_truth=[dict(zip(METRICS, (0.8, 0.3, 0.2)))])

    assert [r.key for r in t2.rows] == ["cogan", "bigan", "simgan", "feature-gan", "cyclegan", "pix2pix"]
    assert [r.name for r in t2.rows] == ["CoGAN", "BiGAN/ALI", "SimGAN", "Feature loss + GAN", "CycleGAN", "pix2pix"]
    published = {r.key: r.published for r in t2.rows}
    assert published == {"cogan": (0.40, 0.10, 0.06), "bigan": (0.19, 0.06, 0.02), "simgan": (0.20, 0.10, 0.04),
                         "feature-gan": (0.06, 0.04, 0.01), "cyclegan": (0.52, 0.17, 0.11),
                         "pix2pix": (0.71, 0.25, 0.18)}
    assert {r.key: r.flag for r in t2.rows} == {"cogan": "1 source", "bigan": "unverified", "simgan": "unverified",
                                                 "feature-gan": "unverified", "cyclegan": None, "pix2pix": None}
    rows = {r.key: r for r in t2.rows}
    assert rows["cogan"].n == 0 and rows["cyclegan"].n == 3 and rows["simgan"].n == 2 and rows["bigan"].n == 2
    assert rows["cyclegan"].stats["per_pixel_acc"].mean == pytest.approx(0.51)
    # best among unpaired rows: pix2pix (paired upper bound) is not a contender
    assert rows["cyclegan"].best == {"per_pixel_acc", "class_iou"}
    assert rows["simgan"].best == {"per_class_acc"} and not rows["pix2pix"].best
    # significance vs CycleGAN: paired over the seeds both have (0, 1), Welch where no seed is shared
    simgan = rows["simgan"].vs_reference["per_pixel_acc"]
    assert (simgan.test, simgan.n) == ("paired-t", 2) and simgan.diff_mean == pytest.approx(-0.19)
    assert rows["simgan"].p["per_pixel_acc"] == pytest.approx(stats.ttest_rel([0.30, 0.33], [0.50, 0.51]).pvalue)
    assert rows["bigan"].vs_reference["per_pixel_acc"].test == "welch"
    assert rows["bigan"].p["per_pixel_acc"] == pytest.approx(
        stats.ttest_ind([0.20, 0.22], [0.50, 0.51, 0.52], equal_var=False).pvalue)
    assert rows["pix2pix"].p["per_pixel_acc"] is None  # n=1
    assert rows["cogan"].p["per_pixel_acc"] is None  # not run
    assert rows["cyclegan"].p == {} and rows["cyclegan"].is_reference
    assert rows["pix2pix"].vs_reference["per_pixel_acc"].test == ""  # nothing tested
    assert t2.ground_truth is not None and t2.ground_truth.published == (0.80, 0.26, 0.21)
    assert t2.ground_truth.stats["per_pixel_acc"].mean == pytest.approx(0.8)
    assert t2.seeds == ["0", "1", "2", "5", "6"]

    t5 = fill_table(TABLES[5], [record("cyclegan", 0, p2l=(0.5, 0.2, 0.1)), record("identity", 0, p2l=(0.4, 0.2, 0.1))])
    assert [r.name for r in t5.rows] == ["Cycle alone", "GAN alone", "GAN + forward cycle", "GAN + backward cycle",
                                         "CycleGAN", "CycleGAN + identity"]
    assert [r.published for r in t5.rows][:5] == [(0.10, 0.05, 0.02), (0.53, 0.11, 0.07), (0.49, 0.11, 0.07),
                                                  (0.01, 0.06, 0.01), (0.58, 0.22, 0.16)]
    assert t5.ground_truth is None  # photo→labels has no FCN ceiling
    assert [r.published for r in fill_table(TABLES[4], []).rows] == [
        (0.22, 0.07, 0.02), (0.51, 0.11, 0.08), (0.55, 0.18, 0.12), (0.39, 0.14, 0.06), (0.52, 0.17, 0.11)]
    assert fill_table(TABLES[4], []).rows[3].flag == "unverified"
    assert [r.published for r in fill_table(TABLES[3], []).rows][0] == (0.45, 0.11, 0.08)


def _with_distances(run: RunRecord, fid: float, kid: float, fd: float) -> RunRecord:
    return dataclasses.replace(run, metrics={**run.metrics, f"{L2P}/fid": fid, f"{L2P}/kid_mean": kid,
                                             f"{L2P}/kid_std": kid / 10, f"{L2P}/fd_fcn": fd})


def test_distance_columns_when_runs_have_them():
    runs = [_with_distances(record("cyclegan", s, l2p=(0.5, 0.15, 0.1)), 40.0 + s, 0.02 + 0.001 * s, 3.0 + s)
            for s in range(3)]
    runs += [_with_distances(record("simgan", s, l2p=(0.3, 0.2, 0.05)), 90.0 + s, 0.08, 9.0) for s in range(2)]
    runs += [record("cogan", 0, l2p=(0.2, 0.1, 0.05))]  # scored without them
    t2 = fill_table(TABLES[2], runs, ground_truth=[dict(zip(METRICS, (0.8, 0.3, 0.2)))])
    rows = {r.key: r for r in t2.rows}
    assert t2.distances == ["fid", "kid_mean", "kid_std", "fd_fcn"]
    fid = rows["cyclegan"].stats["fid"]
    assert (fid.mean, fid.n) == (pytest.approx(41.0), 3) and fid.ci == pytest.approx(stats.t.ppf(0.975, 2) / math.sqrt(3))
    assert {"fid", "kid_mean", "fd_fcn"} <= rows["cyclegan"].best and "per_class_acc" in rows["simgan"].best
    assert "fid" not in rows["cogan"].stats and "fid" not in t2.ground_truth.stats

    meta = render.ReportMeta("distances", "experiment 'd'")
    md = render.markdown(meta, [t2])
    lines = md.splitlines()
    assert next(line for line in lines if line.startswith("| Method")).endswith(" | FID ↓ | KID ↓ | FD-FCN ↓ |")
    assert next(line for line in lines if line.startswith("| CycleGAN |")).endswith(
        "| **41.00 ± 2.48** | **0.0210 ± 0.0025** | **4.000 ± 2.484** |")
    assert next(line for line in lines if line.startswith("| SimGAN")).endswith(
        "| 90.50 ± 6.35 | 0.0800 ± 0.0000 | 9.000 ± 0.000 |")
    assert next(line for line in lines if line.startswith("| CoGAN")).endswith("| – | – | – |")
    assert "↓ lower is better" in md and "not FID" in md and "kid_std in the CSV" in md
    lines = list(csv.DictReader(io.StringIO(render.csv_text([t2]))))
    assert len(lines) == 7 * len(t2.all_rows)  # the three scores and the four distances, every row
    line = next(r for r in lines if r["row"] == "cyclegan" and r["metric"] == "kid_std")
    assert float(line["mean"]) == pytest.approx(0.0021) and line["n"] == "3" and line["published"] == ""
    line = next(r for r in lines if r["row"] == "simgan" and r["metric"] == "fid")
    assert line["published_flag"] == "" and line["significant"] == "" and line["floor"] == ""
    check_latex(render.latex(meta, [t2]), n_tables=1)
    assert r"FID $\downarrow$" in render.latex(meta, [t2])
    assert "<th rowspan=2>FD-FCN ↓</th>" in page.html_table(t2)

    plain = fill_table(TABLES[2], [record("cyclegan", 0, l2p=(0.5, 0.15, 0.1))])
    assert plain.distances == [] and "FID" not in render.markdown(meta, [plain])
    assert len(list(csv.DictReader(io.StringIO(render.csv_text([plain]))))) == 3 * len(plain.all_rows)


# --- MLflow store -------------------------------------------------------------------------------------

SCORES = {  # row → labels2photo per-pixel acc per seed (per-class, IoU derived)
    "cyclegan": [0.50, 0.54, 0.52],
    "no-cycle": [0.40, 0.42, 0.41],
    "cycle-only": [0.21],
    "forward-cycle": [0.51, 0.56],
    "simgan": [0.30, 0.33, 0.31],
    "feature-gan": [0.10, 0.12],
}


def make_run(uri, experiment, row, seed, pixel, parent=None, evaluated=True, samples=False, dataset="synthcity",
             preset="tiny", status="FINISHED", **extra_tags) -> str:
    method = row if row in ("simgan", "feature-gan", "pix2pix", "bigan", "cogan") else "cyclegan"
    tags = {"cgbench.method": method, "cgbench.image_size": "32", "cgbench.row": row, "cgbench.ablation": "" if method != "cyclegan" else row,
            "cgbench.dataset": dataset, "cgbench.dataset_digest": f"{dataset}-digest", "cgbench.preset": preset,
            "cgbench.seed": str(seed), "cgbench.eval.fcn.fcn": "run fcn0", **extra_tags}
    tracker = RunTracker.create(uri, experiment, f"{row}-seed{seed}", tags, parent_run_id=parent)
    for step in range(1, 5):
        tracker.log_metrics({"loss/G_gan": 1.0 / step + 0.01 * seed, "loss/cycle_forward": 0.5 / step,
                             "loss/idt_G": 0.0}, step * 10)
    if evaluated:
        tracker.log_metrics({f"{L2P}/per_pixel_acc": pixel, f"{L2P}/per_class_acc": pixel / 3,
                             f"{L2P}/class_iou": pixel / 5, f"{P2L}/per_pixel_acc": pixel + 0.05,
                             f"{P2L}/per_class_acc": pixel / 2, f"{P2L}/class_iou": pixel / 4,
                             f"{GT}/per_pixel_acc": 0.78, f"{GT}/per_class_acc": 0.27, f"{GT}/class_iou": 0.2}, 40)
    if samples:
        grid = np.zeros((24, 48, 3), np.uint8)
        grid[:, :, 0] = np.linspace(0, 255, 48, dtype=np.uint8)
        tracker.log_image(grid, f"{L2P}/samples.png")
        tracker.log_image(255 - grid, f"{P2L}/samples.png")
    tracker.end(status)
    return tracker.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store: experiment 'study' with rows × seeds, plus noise that must be left out."""
    root = tmp_path_factory.mktemp("report-store")
    uri = f"sqlite:///{root}/mlflow.db"
    for row, values in SCORES.items():
        for seed, pixel in enumerate(values):
            make_run(uri, "study", row, seed, pixel, samples=(seed == 0),
                     **({"cgbench.feature_weights": "random"} if row == "feature-gan" else {}))
    make_run(uri, "study", "cyclegan", 7, 0.99, evaluated=False)  # finished, not evaluated
    make_run(uri, "study", "cyclegan", 8, 0.01, status="FAILED")  # failed: never counted
    other = RunTracker.create(uri, "study", "report-old", {"cgbench.method": "report"})
    other.log_metrics({f"{L2P}/per_pixel_acc": 0.0}, 0)
    other.end()
    # a sweep in its own experiment
    parent = RunTracker.create(uri, "sweeps", "ablations-sweep", {"cgbench.method": "sweep"})
    for seed, pixel in enumerate([0.6, 0.62]):
        make_run(uri, "sweeps", "cyclegan", seed, pixel, parent=parent.run_id)
    make_run(uri, "sweeps", "no-cycle", 0, 0.3, parent=parent.run_id)
    make_run(uri, "sweeps", "no-cycle", 1, 0.9)  # same experiment, not in the sweep
    parent.end()
    # mixed presets, precisions, data preparations
    make_run(uri, "mixed", "cyclegan", 0, 0.5, preset="tiny")
    make_run(uri, "mixed", "cyclegan", 1, 0.5, preset="cpu")
    bf16 = make_run(uri, "precisions", "cyclegan", 0, 0.5, **{"cgbench.precision": "bf16"})
    make_run(uri, "precisions", "cyclegan", 1, 0.5, **{"cgbench.precision": "fp32"})
    authors = make_run(uri, "preps", "cyclegan", 0, 0.5, **{"cgbench.prep": "authors"})
    make_run(uri, "preps", "cyclegan", 1, 0.5, **{"cgbench.prep": "clean"})
    # the floor: null rows of the same data and FCN, in an experiment of their own
    for row, value in (("null-identity", 0.30), ("null-mean-photo", 0.45), ("null-random-photo", 0.40),
                       ("null-majority-labels", 0.50), ("null-random-labels", 0.20)):
        make_run(uri, "nulls", row, 0, value, **{"cgbench.method": "null", "cgbench.seed": ""})
    # paired statistics: two rows of the same seeds (seed 2 scored by a second FCN, which scored null rows
    # of its own), a row of other seeds, and a row scored from images made elsewhere (no seed)
    for seed, (cyclegan, gan) in enumerate(((0.50, 0.46), (0.58, 0.55), (0.47, 0.42))):
        fcn = {"cgbench.eval.fcn.fcn": "run fcn1"} if seed == 2 else {}
        make_run(uri, "paired", "cyclegan", seed, cyclegan, **fcn)
        make_run(uri, "paired", "no-cycle", seed, gan, **fcn)
    for seed, pixel in ((3, 0.40), (4, 0.45)):
        make_run(uri, "paired", "forward-cycle", seed, pixel)
    for i, pixel in enumerate((0.30, 0.36)):
        make_run(uri, "paired", "my-images", i, pixel, **{"cgbench.method": "external", "cgbench.seed": "",
                                                           "cgbench.source": "images"})
    for row, value in (("null-identity", 0.33), ("null-mean-photo", 0.48)):
        make_run(uri, "nulls", row, 0, value, **{"cgbench.method": "null", "cgbench.seed": "",
                                                 "cgbench.eval.fcn.fcn": "run fcn1"})
    return {"uri": uri, "root": root, "sweep": parent.run_id, "bf16": bf16, "authors": authors}


def test_build_report_from_mlflow(store, tmp_path):
    report = build_report(store["uri"], experiment="study", out_dir=tmp_path / "out")
    assert report.name == "study"
    assert [t.number for t in report.tables] == [2, 3, 4, 5]
    assert report.tables[2].number == 4
    t4 = {r.key: r for r in report.tables[2].rows}
    assert t4["cyclegan"].n == 3  # the unevaluated, failed and report runs are left out
    assert t4["cyclegan"].stats["per_pixel_acc"].mean == pytest.approx(0.52)
    assert t4["cyclegan"].stats["per_pixel_acc"].ci == pytest.approx(stats.t.ppf(0.975, 2) * 0.02 / math.sqrt(3))
    assert t4["cycle-only"].n == 1 and t4["backward-cycle"].n == 0
    assert t4["no-cycle"].p["per_pixel_acc"] == pytest.approx(
        stats.ttest_rel(SCORES["no-cycle"], SCORES["cyclegan"]).pvalue)  # the same seeds: paired
    t3 = report.tables[1]
    assert t3.number == 3 and t3.ground_truth is None
    assert {r.key: r.stats["per_pixel_acc"].mean for r in t3.rows if r.n}["simgan"] == pytest.approx(
        np.mean(SCORES["simgan"]) + 0.05)
    gt = report.tables[0].ground_truth
    assert gt.n == 1 and gt.stats["per_pixel_acc"].mean == pytest.approx(0.78)  # one FCN, not one per run
    assert report.tables[0].seeds == ["0", "1", "2"] and report.tables[0].preset == "tiny"

    md = report.markdown
    assert "not run" in md and "n<2" in md and "paired t-test" in md and "Welch" not in md
    assert "**Verdict.** What these runs show about the paper's claims" in md
    assert "| 0.520 ± 0.050▴ |" in md  # CycleGAN: CI 4.303·0.02/√3, above the floor (best null 0.45)
    assert "**0.535 ± 0.318**" in md  # the forward cycle's two seeds have the best mean: CI 12.706·0.0354/√2
    assert "Feature loss + GAN§" in md and "VGG-16 features from random weights, not ImageNet" in md
    assert "0.06†" in md and "(1 source)" in md and "‡" in md
    assert "finished run(s) have no evaluation metrics" in md
    assert "Dataset synthcity" in md and "preset tiny" in md and "seeds 0, 1, 2" in md
    # the store by its file name (it lies outside the working directory), never by this machine's path
    assert "Runs from experiment 'study' in sqlite:///mlflow.db." in md
    assert str(store["root"]) not in md + report.html + report.latex + report.csv

    # the files, and the report run in MLflow (never a row itself)
    for ext in ("md", "tex", "csv", "html", "claims.csv"):
        assert (tmp_path / "out" / f"study.{ext}").is_file()
    assert [p.name for p in report.files] == [f"study.{ext}" for ext in ("md", "tex", "csv", "html", "claims.csv")]
    client = client_for(store["uri"])
    run = client.get_run(report.run_id)
    assert run.data.tags["cgbench.method"] == "report" and "cgbench.row" not in run.data.tags
    assert sorted(a.path for a in client.list_artifacts(report.run_id, "report")) == [
        f"report/study.{ext}" for ext in ("claims.csv", "csv", "html", "md", "tex")]
    again = build_report(store["uri"], experiment="study", tables="4", out_dir=None, log_to_mlflow=False,
                         figures=False)
    assert again.tables[0].rows[4].n == 3 and again.paths == {}

    # CSV: tidy, one line per table × row × metric
    lines = list(csv.DictReader(io.StringIO(report.csv)))
    n_rows = sum(len(t.all_rows) for t in report.tables)
    assert len(lines) == 3 * n_rows
    line = next(r for r in lines if r["table"] == "4" and r["row"] == "cyclegan" and r["metric"] == "per_pixel_acc")
    assert float(line["mean"]) == pytest.approx(0.52) and line["n"] == "3" and float(line["published"]) == 0.52
    assert float(line["std"]) == pytest.approx(0.02) and line["p_vs_cyclegan"] == ""
    line = next(r for r in lines if r["table"] == "2" and r["row"] == "cogan" and r["metric"] == "class_iou")
    assert line["n"] == "0" and line["mean"] == "" and line["published_flag"] == "1 source"

    check_latex(report.latex, n_tables=4)


def check_latex(tex: str, n_tables: int) -> None:
    """Balanced environments, booktabs rules, and the same number of columns in every row."""
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", tex):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env
    assert not stack
    tabulars = re.findall(r"\\begin\{tabular\}\{([^}]*)\}(.*?)\\end\{tabular\}", tex, re.S)
    assert len(tabulars) == n_tables
    for spec, body in tabulars:
        ncols = len(spec.split())
        assert body.count(r"\toprule") == 1 and body.count(r"\bottomrule") == 1 and r"\midrule" in body
        assert body.index(r"\toprule") < body.index(r"\midrule") < body.index(r"\bottomrule")
        for line in body.strip().splitlines():
            line = line.strip()
            if re.fullmatch(r"(\\(toprule|midrule|bottomrule)|(\\cmidrule\(lr\)\{\d+-\d+\}\s*)+)", line):
                continue
            assert line.endswith(r"\\"), line
            cells = re.split(r"(?<!\\)&", line[:-2])
            width = sum(int(m.group(1)) if (m := re.match(r"\s*\\multicolumn\{(\d+)\}", c)) else 1 for c in cells)
            assert width == ncols, line
        # no raw special characters left in the cells
        assert not re.search(r"(?<!\\)[%#_]", body)
        assert "±" not in body and "→" not in body


@pytest.mark.parametrize("uri, shown", [
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),  # relative, as typed
    ("sqlite:///{cwd}/runs/mlflow.db", "sqlite:///runs/mlflow.db"),  # under the working directory
    ("sqlite:////elsewhere/on/this/machine/mlflow.db", "sqlite:///mlflow.db"),  # elsewhere: the file name
    ("{cwd}/mlruns", "mlruns"),  # a file store
    ("file:///srv/mlruns", "mlruns"),
    ("http://user:secret@tracking.example:5000", "http://tracking.example:5000"),  # no credentials
    ("databricks", "databricks"),
])
def test_store_name_never_shows_a_machine_path(uri, shown, tmp_path):
    assert store_name(uri.format(cwd=tmp_path), cwd=tmp_path) == shown


def test_latex_escape():
    assert latex_escape("a_b & 50% #1 {x} ~ ^ \\ $") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} \$")
    assert latex_escape("labels→photo ±") == r"labels$\rightarrow$photo $\pm$"


def test_sweep_selection_and_mixed_runs(store, tmp_path):
    report = build_report(store["uri"], sweep_run_id=store["sweep"], tables=(4,), out_dir=tmp_path, figures=False)
    assert report.name == "ablations-sweep"
    rows = {r.key: r for r in report.tables[0].rows}
    assert rows["cyclegan"].n == 2 and rows["no-cycle"].n == 1  # the run outside the sweep is left out
    assert rows["no-cycle"].stats["per_pixel_acc"].mean == pytest.approx(0.3)
    assert client_for(store["uri"]).get_run(report.run_id).data.tags["cgbench.report.sweep"] == store["sweep"]
    with pytest.raises(CgbenchError, match="mix datasets or presets.*--sweep"):
        build_report(store["uri"], experiment="mixed", out_dir=tmp_path, log_to_mlflow=False)
    with pytest.raises(CgbenchError, match="no MLflow experiment named 'nope'"):
        build_report(store["uri"], experiment="nope", out_dir=tmp_path)
    with pytest.raises(CgbenchError, match="unknown table '7'"):
        build_report(store["uri"], experiment="study", tables="7", out_dir=tmp_path)


def test_cli_report_end_to_end(store, tmp_path):
    from cgbench.cli import main

    out = tmp_path / "reports"
    result = CliRunner().invoke(main, ["report", "--experiment", "study", "--table", "all", "--out", str(out),
                                       "--tracking-uri", store["uri"], "--name", "paper tables"])
    assert result.exit_code == 0, result.output
    assert "| CycleGAN | 3 |" in result.output and "Table 5." in result.output
    assert sorted(p.name for p in out.iterdir()) == [f"paper tables.{e}" for e in  # the name, as given
                                                     ("claims.csv", "csv", "html", "md", "tex")]
    assert (out / "paper tables.md").read_text() in result.output

    bad = CliRunner().invoke(main, ["report", "--experiment", "mixed", "--tracking-uri", store["uri"],
                                    "--out", str(out)])
    assert bad.exit_code == 2 and bad.output.startswith("error: ") and bad.output.count("\n") == 1


# --- the HTML page in a real browser ------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

IMG_CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const out = document.createElement('pre'); out.id = 'imgcheck';
  out.textContent = JSON.stringify({n: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
                                    tables: document.querySelectorAll('table').length});
  document.body.appendChild(out);
});
</script>"""


def test_html_page_renders(store, tmp_path):
    report = build_report(store["uri"], experiment="study", out_dir=tmp_path, log_to_mlflow=False)
    page = report.html
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(srcs) == 4 + 6 + 2 * 6  # bar charts, loss curves per row, samples per row and direction
    assert all(s.startswith("data:image/png;base64,") for s in srcs)  # no external files or network
    assert not re.search(r'(href|src)="(https?:|//)', page)
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", IMG_CHECK + "</body>"), encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
           "--dump-dom", probe.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_SECONDS)
    found = re.search(r'<pre id="imgcheck">(.*?)</pre>', done.stdout)
    assert found, f"chromium printed no result (rc {done.returncode}): {done.stderr[-2000:]}"
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result == {"n": len(srcs), "loaded": len(srcs), "tables": 4 + 4}  # each table and its verdict grid


# --- the floor ---------------------------------------------------------------------------------------


def test_null_rows_and_clears_floor_in_every_table(store, tmp_path):
    report = build_report(store["uri"], experiment="study", out_dir=tmp_path, figures=False, log_to_mlflow=False)
    rows = list(csv.DictReader(io.StringIO(report.csv)))
    by_table = {(int(r["table"]), r["row"], r["metric"]): r for r in rows}
    for table, nulls in ((2, ("null-identity", "null-mean-photo", "null-random-photo")),
                         (4, ("null-identity", "null-mean-photo", "null-random-photo")),
                         (3, ("null-majority-labels", "null-random-labels")),
                         (5, ("null-majority-labels", "null-random-labels"))):
        assert {r["row"] for r in rows if int(r["table"]) == table and r["row"].startswith("null-")} == set(nulls)
    # labels→photo floor: the best null (mean photo, 0.45 per-pixel); CycleGAN's 0.50, 0.54, 0.52 clear it,
    # no-cycle's 0.40, 0.42, 0.41 do not, cycle-only (n = 1) cannot be tested.
    cyclegan, no_cycle = by_table[(4, "cyclegan", "per_pixel_acc")], by_table[(4, "no-cycle", "per_pixel_acc")]
    assert float(cyclegan["floor"]) == pytest.approx(0.45)
    assert cyclegan["p_vs_floor"] and float(cyclegan["p_vs_floor"]) == pytest.approx(
        stats.ttest_1samp([0.50, 0.54, 0.52], 0.45, alternative="greater").pvalue)
    assert (cyclegan["clears_floor"], no_cycle["clears_floor"]) == ("true", "false")
    assert by_table[(4, "cycle-only", "per_pixel_acc")]["clears_floor"] == "false"
    assert by_table[(4, "null-mean-photo", "per_pixel_acc")]["clears_floor"] == ""
    # photo→labels: the best null (majority labels) scores 0.55 per-pixel; CycleGAN's 0.55-0.59 ...
    assert float(by_table[(5, "cyclegan", "per_pixel_acc")]["floor"]) == pytest.approx(0.55)
    table4 = report.markdown.split("**Table 4.")[1].split("**Table 5.")[0]
    assert "| Null: the mean training photo | 1 | 0.450 |" in table4 and "0.520 ± " in table4 and "▴" in table4
    assert "The floor is what a translator that learned nothing scores" in report.markdown


def test_a_table_never_mixes_precisions_or_data_preparations(store, tmp_path):
    from cgbench.cli import main

    for experiment, what, run_id in (("precisions", "precisions", store["bf16"]),
                                     ("preps", "data preparations", store["authors"])):
        out = CliRunner().invoke(main, ["report", "--experiment", experiment, "--tracking-uri", store["uri"],
                                        "--out", str(tmp_path)])
        assert out.exit_code == 2 and out.output.count("\n") == 1, out.output
        assert f"mix {what}" in out.output and run_id[:8] in out.output


def test_the_caption_says_where_the_setting_departs_from_the_papers(tmp_path):
    from cgbench.config import PRESETS, Config
    from cgbench.report.paper import setting_departures

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = client_for(uri)
    cpu = Config().replace(**PRESETS["cpu"]).to_dict()
    for seed, lr in ((0, 5e-4), (1, 4e-4), (2, 5e-4)):
        run_id = make_run(uri, "setting", "cyclegan", seed, 0.5 + 0.01 * seed, preset="cpu")
        for key in ("image_size", "ngf", "ndf", "n_blocks", "upsample", "batch_size", "iters", "epochs"):
            client.log_param(run_id, key, str(cpu[key]))
        client.log_param(run_id, "lr", str(lr))
    make_run(uri, "setting", "no-cycle", 0, 0.4, preset="cpu")  # scored from elsewhere: no config params

    # runs of one row at two learning rates: each rate a row of its own (refused without split_settings)
    report = build_report(uri, experiment="setting", tables="4", out_dir=None, log_to_mlflow=False,
                          split_settings=True)
    assert report.tables[0].setting == (
        "Our setting departs from the paper's: 64 px (paper: 128 px), ngf 16 (paper: ngf 64), ndf 16 "
        "(paper: ndf 64), 4 residual blocks (paper: 6 residual blocks), resize-convolution upsampling (paper: "
        "transposed-convolution upsampling), lr 0.0004 or lr 0.0005 (paper: lr 0.0002), "
        f"{cpu['iters']} iterations (paper: 200 epochs).")
    assert "preset cpu, seeds 0, 1, 2. Our setting departs from the paper's: 64 px" in report.markdown
    assert "Our setting departs" in report.latex and "Our setting departs" in report.html
    assert setting_departures([Config().replace(**PRESETS["paper"]).to_dict()]) == ""  # the paper's: nothing to say
    assert setting_departures([{"image_size": "64"}]) == ""  # no full config: nothing claimed
    before = {k: v for k, v in Config().replace(**PRESETS["paper"]).to_dict().items() if k != "upsample"}
    assert setting_departures([before]) == ""  # recorded before the key existed: the paper's generator


# --- paired statistics and the verdicts, recomputed from the runs' own metrics ----------------------------


def _holm_by_hand(ps: list[float]) -> list[float]:
    ranked = sorted(ps)
    return [max(min(1.0, (len(ps) - j) * q) for j, q in enumerate(ranked) if q <= p) for p in ps]


def test_paired_p_values_equal_a_recomputation_from_mlflow(store, tmp_path):
    from mlflow.tracking import MlflowClient

    from cgbench.report.render import CLAIMS_FIELDS, CSV_FIELDS

    report = build_report(store["uri"], experiment="paired", tables="4", out_dir=tmp_path, log_to_mlflow=False,
                          figures=False)
    client = MlflowClient(store["uri"])  # the runs' own metrics, read back without the report's code
    runs = client.search_runs([client.get_experiment_by_name("paired").experiment_id])
    nulls = client.search_runs([e.experiment_id for e in client.search_experiments()],
                               "tags.`cgbench.method` = 'null'")
    lines = {(r["row"], r["metric"]): r for r in csv.DictReader(io.StringIO(report.csv)) if r["table"] == "4"}
    assert list(csv.DictReader(io.StringIO(report.csv)).fieldnames) == list(CSV_FIELDS)
    for metric in METRICS:
        key = f"{L2P}/{metric}"
        seeded = {(r.data.tags["cgbench.row"], r.data.tags["cgbench.seed"]): r for r in runs}
        cyclegan = [seeded["cyclegan", s].data.metrics[key] for s in "012"]
        gan = [seeded["no-cycle", s].data.metrics[key] for s in "012"]
        paired = stats.ttest_rel(gan, cyclegan)
        line = lines["no-cycle", metric]
        assert line["test"] == "paired-t" and float(line["p_vs_cyclegan"]) == pytest.approx(paired.pvalue)
        assert float(line["p_paired"]) == pytest.approx(paired.pvalue)
        assert float(line["diff_mean"]) == pytest.approx(np.mean(np.subtract(gan, cyclegan)))
        low, high = paired.confidence_interval(0.95)
        assert float(line["diff_ci"]) == pytest.approx((high - low) / 2)
        for row in ("forward-cycle", "my-images"):  # no seed shared with CycleGAN: Welch
            values = [r.data.metrics[key] for r in runs if r.data.tags["cgbench.row"] == row]
            line = lines[row, metric]
            assert line["test"] == "welch" and line["p_paired"] == ""
            assert float(line["p_vs_cyclegan"]) == pytest.approx(
                stats.ttest_ind(values, cyclegan, equal_var=False).pvalue)
        # the floor: each run against the best null row scored by its own FCN
        floors = [max(r.data.metrics[key] for r in nulls if r.data.tags["cgbench.row"].startswith("null-")
                      and r.data.tags["cgbench.row"] in ("null-identity", "null-mean-photo", "null-random-photo")
                      and r.data.tags["cgbench.eval.fcn.fcn"] == seeded["cyclegan", s].data.tags["cgbench.eval.fcn.fcn"])
                  for s in "012"]
        assert float(lines["cyclegan", metric]["p_vs_floor"]) == pytest.approx(
            stats.ttest_rel(cyclegan, floors, alternative="greater").pvalue)
    assert "Welch's t-test (unequal variances) where a row shares fewer than 2 seeds with CycleGAN: " \
           "GAN + forward cycle, my-images (scored from images)" in report.markdown

    # claims.csv: the same tests, Holm over the table's tested claims
    claims = list(csv.DictReader(io.StringIO(report.claims_csv)))
    assert report.claims_csv == (tmp_path / "paired.claims.csv").read_text(encoding="utf-8")
    assert list(csv.DictReader(io.StringIO(report.claims_csv)).fieldnames) == list(CLAIMS_FIELDS)
    assert [(c["claim"], c["metric"]) for c in claims if c["worse"] != "floor"] == [
        (f"CycleGAN > {name}", m) for name in ("Cycle alone", "GAN alone", "GAN + forward cycle",
                                               "GAN + backward cycle") for m in METRICS]
    assert {c["better"] for c in claims if c["worse"] == "floor"} == {
        "cycle-only", "no-cycle", "forward-cycle", "backward-cycle", "cyclegan", "my-images"}
    gan = {c["metric"]: c for c in claims if c["claim"] == "CycleGAN > GAN alone"}
    for metric in METRICS:
        line = lines["no-cycle", metric]
        assert float(gan[metric]["p"]) == pytest.approx(float(line["p_vs_cyclegan"]))
        assert float(gan[metric]["diff_mean"]) == pytest.approx(-float(line["diff_mean"]))
    tested = [c for c in claims if c["p"]]
    assert all(c["verdict"] in ("shown", "contradicted", "not resolved") for c in tested)
    assert {c["verdict"] for c in claims if c["worse"] in ("cycle-only", "backward-cycle")} == {"not run"}
    for c, expected in zip(tested, _holm_by_hand([float(c["p"]) for c in tested])):
        assert float(c["p_holm"]) == pytest.approx(expected) and c["family"] == str(len(tested))
        verdict = "not resolved" if expected >= 0.05 else ("shown" if float(c["diff_mean"]) > 0 else "contradicted")
        assert c["verdict"] == verdict
    assert report.verdicts.startswith("Table 4. Ablation: FCN scores, labels→photo.\nWhat these runs show")
    lead, *verdict = report.verdicts.splitlines()[1:]
    assert lead.startswith("What these runs show about the paper's claims at this setting (2 to 3 runs per row;")
    assert f"**Verdict.** {lead}" in report.markdown and all(f"- {line}" in report.markdown for line in verdict)
