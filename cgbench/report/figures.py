"""The report's figures, as ``data:image/png;base64,...`` URIs for the self-contained HTML page:
a bar chart per table (our means with 95% intervals, the paper's values, floor and ceiling), the
mean training losses of each row, and one run's sample translations per row."""

from __future__ import annotations

import base64
import io
import math
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cgbench.protocol import metric_prefix
from cgbench.report.paper import DIRECTIONS, METRIC_NAMES, METRICS
from cgbench.report.tables import RunRecord, TableResult


@dataclass
class Figures:
    """Images for the HTML page, as ``data:image/png;base64,...`` URIs."""

    bars: dict[int, str] = field(default_factory=dict)  # table number → bar chart
    losses: list[tuple[str, str, str]] = field(default_factory=list)  # (row name, caption, chart)
    #: (row name, caption, [(image caption, image)])
    samples: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)


def sample_rows(direction: str) -> str:
    """What the rows of an evaluator's ``samples.png`` show (the built-in evaluators' grids)."""
    from cgbench.plugins import discover

    built_in = {"labels2photo": "fcn", "photo2labels": "seg"}  # whose samples.png the report shows
    rows = getattr(discover().get(built_in.get(direction, "")), "sample_rows", None)
    if not rows:
        return "the evaluator's sample grid"
    return "top to bottom: " + ", ".join((*rows, "ground truth"))



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


def figures_for(client, results: list[TableResult]) -> Figures:
    figures = Figures()
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

