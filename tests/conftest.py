"""Shared fixtures: a tiny SynthCity dataset and a real sqlite MLflow store per test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

TINY_SIZE = 32  # images 64x32

#: Seconds after which a test's subprocess, or its wait for one, counts as hung. A guard against
#: hangs, not a speed target: far above what any step takes on a loaded 2-core machine (where a
#: two-process run that takes a minute alone was seen to take over four).
HANG_SECONDS = 1800.0


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A tiny SynthCity set (Cityscapes layout), generated once per test session."""
    from cgbench.data.synthcity import generate

    return generate(tmp_path_factory.mktemp("synthcity") / "synthcity", size=TINY_SIZE, n_train=12, n_val=6,
                    seed=0, workers=1)


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    """A fresh sqlite MLflow store; artifacts land beside it."""
    return f"sqlite:///{tmp_path}/mlflow.db"


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = HANG_SECONDS):
    """Run the real ``cgbench`` console script; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    exe = Path(sys.executable).with_name("cgbench")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cgbench"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)


def wait_until(done: Callable[[], Any], proc: subprocess.Popen, what: str,
               output: Callable[[], str] | None = None) -> Any:
    """Poll ``done`` until it returns something true while ``proc`` runs, waiting on the process
    between polls, and return that; fail if the process ends first (with ``output()`` in the
    message, when given), or after :data:`HANG_SECONDS`."""
    deadline = time.monotonic() + HANG_SECONDS
    while not (found := done()):
        try:
            status = proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            assert time.monotonic() < deadline, f"no {what} after {HANG_SECONDS:.0f} s"
            continue
        raise AssertionError(f"the process ended (status {status}) before {what}" +
                             (f": {output()}" if output is not None else ""))
    return found


def assert_one_line_error(out, *fragments: str) -> None:
    """A click CliRunner result: exit status 2, one line on stderr naming every fragment, no traceback."""
    assert out.exit_code == 2, (out.stdout, out.stderr)
    err = out.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """Every test runs in its own folder, so default paths (./mlflow.db, ./data) stay out of the repo."""
    monkeypatch.chdir(tmp_path)
