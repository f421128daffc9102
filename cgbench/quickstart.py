"""The main job: from nothing to the paper's ablation tables on the embedded dataset, on a CPU.

1. Generate SynthCity if it is absent.
2. Train the FCN evaluator (once per dataset; found again by tag).
3. Run ``runs/quickstart.yaml``: the ablation rows at the ``cpu`` preset, three seeds, trained and
   evaluated as children of one sweep run.
4. Write the report (Markdown, LaTeX, CSV, HTML) to ``reports/`` and print the tables.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Callable

from cgbench.errors import CgbenchError

SPEC = Path(__file__).resolve().parent.parent / "runs" / "quickstart.yaml"

CAVEAT = (
    "These numbers come from real training and evaluation at a CPU size on SynthCity: they are not the "
    "paper's setting (128 px, full width, 200 epochs at lr 2e-4, real Cityscapes); each table's caption above "
    "says where its runs depart from it. For the paper's setting, on a GPU: "
    "cgbench sweep runs/ablations.yaml --preset paper --data CITYSCAPES_DIR"
)


def run_quickstart(
    out: str | Path = "reports",
    jobs: int = 2,
    data: str | None = None,
    preset: str | None = None,
    tracking_uri: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Path:
    from cgbench.report import build_report
    from cgbench.sweep import run_sweep

    if not SPEC.is_file():
        raise CgbenchError(f"{SPEC} is missing; quickstart runs from a checkout of cgbench (pip install -e .)")
    started = time.perf_counter()
    echo("cgbench quickstart: SynthCity -> FCN evaluator -> ablation sweep (Tables 4 and 5) -> report.")
    result = run_sweep(SPEC, jobs=jobs, preset=preset, data=data, tracking_uri=tracking_uri, progress=progress,
                       echo=echo)
    report = build_report(tracking_uri=tracking_uri, sweep_run_id=result.parent_run_id, tables=(4, 5),
                          out_dir=out, name="quickstart")
    echo("")
    echo(report.markdown)
    echo(CAVEAT)
    echo(f"Report: {', '.join(str(p) for p in report.files)}")
    ui = shlex.join(["mlflow", "ui", *(["--backend-store-uri", tracking_uri] if tracking_uri else [])])
    echo(f"Compare the runs: {ui}  (then open http://127.0.0.1:5000, experiment {result.experiment!r})")
    echo(f"Quickstart finished in {(time.perf_counter() - started) / 60:.1f} min.")
    return Path(out)
