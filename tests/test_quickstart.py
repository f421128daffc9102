"""The main job leaves the checkout clean: everything ``cgbench quickstart`` writes where it runs
(data, the MLflow store and its lock, artifacts, reports) is ignored by git, and the committed
reference reports are left as they are."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TINY_SIZE, run_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None, reason="needs a git checkout")
def test_quickstart_leaves_a_clean_checkout(synth_dir, tmp_path):
    clone = tmp_path / "clone"  # the committed tree, as a new user gets it
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    shutil.copytree(synth_dir, clone / "data" / f"synthcity-{TINY_SIZE}")  # where the default dataset lives
    reference = {p: p.read_bytes() for p in (clone / "reports" / "reference").rglob("*") if p.is_file()}

    out = run_cli("quickstart", "--preset", "tiny", "--no-progress", cwd=clone)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (clone / "reports" / "quickstart.md").is_file() and (clone / "mlflow.db").is_file()
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout
    assert status == ""
    assert {p: p.read_bytes() for p in (clone / "reports" / "reference").rglob("*") if p.is_file()} == reference
