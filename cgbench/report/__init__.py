"""The report builder: the paper's Cityscapes tables filled from MLflow runs, aggregated over seeds.

``build_report(tracking_uri, experiment=..., sweep_run_id=..., tables=(2, 3, 4, 5), out_dir="reports")``
reads the finished, evaluated runs, fills Tables 2–5 (ours beside the published values; each row
tested against CycleGAN, paired over shared seeds, and against the floor), judges the paper's claims
(shown / contradicted / not resolved, Holm-corrected per table), writes Markdown, LaTeX, CSV, the
claims' CSV and a self-contained HTML page, and logs them as artifacts of a ``cgbench.method=report``
run. ``Report.verdicts`` is the verdict in plain words. ``aggregate(values)`` is the pure statistic.

Modules, in the data's way: ``aggregate`` (statistics), ``paper`` (the published tables),
``tables`` (tables filled with runs), ``verdicts`` (the claims judged), ``runs`` (reading MLflow),
``figures``, ``cells`` (shared text), ``render`` (Markdown, LaTeX, CSV), ``page`` (HTML), ``study``
(Table 1), ``build`` (the report).
"""

from cgbench.report.aggregate import Stat, aggregate, welch_p
from cgbench.report.build import Report, build_report, parse_tables
from cgbench.report.tables import RunRecord, TableResult, fill_table

__all__ = ["Report", "RunRecord", "Stat", "TableResult", "aggregate", "build_report", "fill_table",
           "parse_tables", "welch_p"]
