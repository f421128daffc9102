"""The report builder: the paper's Cityscapes tables filled from MLflow runs, aggregated over seeds.

``build_report(tracking_uri, experiment=..., sweep_run_id=..., tables=(2, 3, 4, 5), out_dir="reports")``
reads the finished, evaluated runs, fills Tables 2–5 (ours beside the published values, Welch's t-test
of each row against CycleGAN), writes Markdown, LaTeX, CSV and a self-contained HTML page, and logs
them as artifacts of a ``cgbench.method=report`` run. ``aggregate(values)`` is the pure statistic.
"""

from cgbench.report.aggregate import RunRecord, Stat, TableResult, aggregate, fill_table, welch_p
from cgbench.report.build import Report, build_report, parse_tables

__all__ = ["Report", "RunRecord", "Stat", "TableResult", "aggregate", "build_report", "fill_table",
           "parse_tables", "welch_p"]
