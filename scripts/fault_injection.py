#!/usr/bin/env python
"""Fault injection for issue 17: the concurrency and signal cases, each tried many times through
the real CLI on a real sqlite store, and every metric history counted afterwards.

Not part of CI (it takes a long while). Run it from the repository root with the package
installed, e.g.::

    python scripts/fault_injection.py                       # every case 20 times
    python scripts/fault_injection.py --trials 3 --cases double-ctrl-c,new-store

Cases:

* ``double-ctrl-c``: ``cgbench run``, two SIGINTs 0-40 ms apart once a random step is recorded;
  exit 130, then ``--resume`` to the end.
* ``sweep-ctrl-c``: ``cgbench sweep --jobs 2``, SIGINT twice to its process group once both
  children record steps; exit 130, then the same sweep again to the end.
* ``concurrent-resume``: a second ``--resume`` while the run trains (must exit 2), then kill -9 and
  two ``--resume`` at once (one exits 2, the other trains to the end).
* ``concurrent-sweeps``: two ``cgbench sweep`` of one spec at once (each child and the FCN once).
* ``new-store``: two ``cgbench run`` started at once on a new sqlite file (both succeed).

Every trial gets a new store. At the end, for every training run: the steps expected (iterations x
training metrics), the steps recorded, the duplicates (a step recorded twice: must be 0), the runs
left RUNNING (must be 0), and the exit statuses that were not the expected ones.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CASES = ("double-ctrl-c", "sweep-ctrl-c", "concurrent-resume", "concurrent-sweeps", "new-store")
TRAIN_KEYS = ("lr", "perf/sec_per_iter")  # with every loss/* key the run has
WAIT_SECONDS = 900


@dataclass
class Tally:
    trials: int = 0
    runs: int = 0
    expected: int = 0
    recorded: int = 0
    duplicates: int = 0
    missing: int = 0
    running: int = 0
    refused: int = 0  # a second writer refused with exit 2 (concurrent-resume)
    bad_exits: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in ("trials", "runs", "expected", "recorded", "duplicates", "missing", "running", "refused"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.bad_exits += other.bad_exits


def cgbench(*args: str) -> list[str]:
    exe = shutil.which("cgbench") or str(Path(sys.executable).with_name("cgbench"))
    return [exe, *args]


def start(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(cgbench(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kwargs)


def finish(proc: subprocess.Popen, expected: tuple[int, ...], what: str, tally: Tally) -> str:
    out, err = proc.communicate(timeout=WAIT_SECONDS)
    if proc.returncode not in expected or "Traceback" in err:
        tally.bad_exits.append(f"{what}: exit {proc.returncode} (expected {expected}): {err.strip()[-400:]}")
    return out + err


def run_id_of(proc: subprocess.Popen) -> str:
    for line in proc.stdout:
        if match := re.search(r"MLflow run ([0-9a-f]{32})", line):
            return match.group(1)
    raise RuntimeError("no run started: " + proc.stderr.read()[-400:])


def last_step(client, run_id: str) -> int:
    return max((m.step for m in client.get_metric_history(run_id, "loss/D_Y")), default=0)


def wait_until(condition, proc: subprocess.Popen | None = None) -> bool:
    """Poll ``condition``; False when ``proc`` ended first or the wait timed out."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def count(client, run_ids: list[str], total: int, tally: Tally) -> None:
    """Every training metric history of the runs: steps 1..total each exactly once."""
    for run_id in run_ids:
        run = client.get_run(run_id)
        tally.runs += 1
        tally.running += run.info.status == "RUNNING"
        keys = [k for k in run.data.metrics if k.startswith("loss/") or k in TRAIN_KEYS]
        for key in keys:
            steps = [m.step for m in client.get_metric_history(run_id, key)]
            tally.expected += total
            tally.recorded += len(steps)
            tally.duplicates += len(steps) - len(set(steps))
            tally.missing += len(set(range(1, total + 1)) - set(steps))


def train_args(data: Path, uri: str, iters: int) -> list[str]:
    return ["run", "--data", str(data), "--tracking-uri", uri, "--preset", "tiny", "--iters", str(iters), "--set",
            "checkpoint_every=5", "--experiment", "fi", "--no-progress"]


# --- the cases -------------------------------------------------------------------------------------


def double_ctrl_c(data: Path, work: Path, rng: random.Random) -> Tally:
    from mlflow import MlflowClient

    tally, uri, iters = Tally(), f"sqlite:///{work}/mlflow.db", 60
    proc = start(train_args(data, uri, iters), work)
    run_id = run_id_of(proc)
    client = MlflowClient(uri)
    at = rng.randint(5, 40)
    if wait_until(lambda: last_step(client, run_id) >= at, proc):
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(rng.uniform(0.0, 0.04))
        os.kill(proc.pid, signal.SIGINT)
    finish(proc, (130,), "double Ctrl-C", tally)
    resume = start(["run", "--resume", run_id, "--tracking-uri", uri, "--no-progress"], work)
    finish(resume, (0,), "resume after double Ctrl-C", tally)
    count(client, [run_id], iters, tally)
    return tally


SPEC = """\
name: fi
preset: tiny
seeds: [0, 1]
evaluators: {evaluators}
set: {{iters: {iters}, checkpoint_every: 5}}
rows:
  - {{row: cyclegan, ablation: cyclegan}}
"""


def sweep_runs(client, method: str) -> list:
    ids = [e.experiment_id for e in client.search_experiments()]
    return [r for r in client.search_runs(ids, max_results=1000) if r.data.tags.get("cgbench.method") == method]


def sweep_ctrl_c(data: Path, work: Path, rng: random.Random) -> Tally:
    from mlflow import MlflowClient

    tally, uri, iters = Tally(), f"sqlite:///{work}/mlflow.db", 60
    spec = work / "fi.yaml"
    spec.write_text(SPEC.format(evaluators="[seg]", iters=iters))
    args = ["sweep", str(spec), "--jobs", "2", "--data", str(data), "--tracking-uri", uri, "--no-progress"]
    proc = start(args, work, start_new_session=True)
    client = MlflowClient(uri)
    at = rng.randint(5, 40)

    def started() -> bool:
        children = sweep_runs(client, "cyclegan")
        return len(children) == 2 and all(last_step(client, r.info.run_id) >= at for r in children)

    if wait_until(started, proc):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(rng.uniform(0.0, 0.04))
        os.killpg(proc.pid, signal.SIGINT)
    finish(proc, (130,), "Ctrl-C to sweep --jobs 2", tally)
    tally.running += sum(r.info.status == "RUNNING" for r in sweep_runs(client, "sweep"))
    finish(start(args, work), (0,), "the same sweep again", tally)
    children = sweep_runs(client, "cyclegan")
    if len(children) != 2:
        tally.bad_exits.append(f"sweep: {len(children)} children instead of 2")
    count(client, [r.info.run_id for r in children], iters, tally)
    tally.running += sum(r.info.status == "RUNNING" for r in sweep_runs(client, "sweep"))
    return tally


def concurrent_resume(data: Path, work: Path, rng: random.Random) -> Tally:
    from mlflow import MlflowClient

    tally, uri, iters = Tally(), f"sqlite:///{work}/mlflow.db", 300  # long enough to outlast the racer's start
    first = start(train_args(data, uri, iters), work)
    run_id = run_id_of(first)
    client = MlflowClient(uri)
    resume = ["run", "--resume", run_id, "--tracking-uri", uri, "--no-progress"]
    at = rng.randint(5, 30)
    if wait_until(lambda: last_step(client, run_id) >= at, first):
        second = start(resume, work)
        finish(second, (2,), "--resume while the run trains", tally)
        tally.refused += second.returncode == 2
        first.kill()
    finish(first, (-signal.SIGKILL,), "the first writer, killed", tally)
    racers = [start(resume, work) for _ in range(2)]
    for proc in racers:
        finish(proc, (0, 2), "two --resume at once", tally)
    codes = sorted(p.returncode for p in racers)
    tally.refused += codes == [0, 2]
    if codes != [0, 2]:
        tally.bad_exits.append(f"two --resume at once: exits {codes} (expected one 0, one 2)")
    count(client, [run_id], iters, tally)
    return tally


def concurrent_sweeps(data: Path, work: Path, rng: random.Random) -> Tally:
    from mlflow import MlflowClient

    tally, uri, iters = Tally(), f"sqlite:///{work}/mlflow.db", 6
    spec = work / "fi.yaml"
    spec.write_text(SPEC.format(evaluators="[fcn, seg]", iters=iters))
    args = ["sweep", str(spec), "--data", str(data), "--tracking-uri", uri, "--no-progress"]
    MlflowClient(uri).search_experiments()  # the store exists (new-store races its creation)
    sweeps = [start(args, work) for _ in range(2)]
    for proc in sweeps:
        finish(proc, (0,), "two sweeps at once", tally)
    client = MlflowClient(uri)
    found = {m: sweep_runs(client, m) for m in ("sweep", "fcn", "cyclegan", "null")}
    nulls = [r.data.tags.get("cgbench.row") for r in found["null"]]
    shape = (len(found["sweep"]), len(found["fcn"]), len(found["cyclegan"]), len(nulls) - len(set(nulls)))
    if shape != (1, 1, 2, 0):
        tally.bad_exits.append(f"two sweeps: {shape[0]} parents, {shape[1]} FCNs, {shape[2]} children, "
                               f"{shape[3]} null copies (expected 1, 1, 2, 0)")
    count(client, [r.info.run_id for r in found["cyclegan"]], iters, tally)
    return tally


def new_store(data: Path, work: Path, rng: random.Random) -> Tally:
    from mlflow import MlflowClient

    tally, uri, iters = Tally(), f"sqlite:///{work}/new.db", 2
    procs = [start(train_args(data, uri, iters), work) for _ in range(2)]
    for proc in procs:
        finish(proc, (0,), "two first commands on a new store", tally)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fi")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    if len(runs) != 2:
        tally.bad_exits.append(f"new store: {len(runs)} runs instead of 2")
    count(client, [r.info.run_id for r in runs], iters, tally)
    return tally


RUNNERS = {"double-ctrl-c": double_ctrl_c, "sweep-ctrl-c": sweep_ctrl_c, "concurrent-resume": concurrent_resume,
           "concurrent-sweeps": concurrent_sweeps, "new-store": new_store}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="tries of each case (default 20)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, of: " + ", ".join(CASES))
    parser.add_argument("--seed", type=int, default=0, help="seeds the random signal timings")
    parser.add_argument("--keep", type=Path, default=None, help="keep every trial's store under this folder")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in RUNNERS]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; cases: {', '.join(CASES)}")
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="cgbench-fi-", dir=args.keep))
    data = root / "synth"
    subprocess.run(cgbench("data", "synth", "--out", str(data), "--size", "32", "--train", "12", "--val", "6",
                           "--workers", "1"), check=True, capture_output=True)
    totals: dict[str, Tally] = {}
    for case in cases:
        totals[case] = Tally()
        for trial in range(args.trials):
            work = root / f"{case}-{trial:02d}"
            work.mkdir()
            started = time.monotonic()
            tally = RUNNERS[case](data, work, rng)
            tally.trials = 1
            totals[case].add(tally)
            print(f"{case} {trial + 1}/{args.trials}: {tally.runs} runs, {tally.recorded}/{tally.expected} steps, "
                  f"{tally.duplicates} duplicates, {tally.missing} missing, {tally.running} left RUNNING, "
                  f"{len(tally.bad_exits)} unexpected ({time.monotonic() - started:.0f} s)", flush=True)
            for line in tally.bad_exits:
                print("   ", line, flush=True)
            if args.keep is None:
                shutil.rmtree(work, ignore_errors=True)
    print_table(totals)
    all_ok = all(t.duplicates == t.missing == t.running == 0 and not t.bad_exits for t in totals.values())
    return 0 if all_ok else 1


def print_table(totals: dict[str, Tally]) -> None:
    print(f"\n{'case':18s} {'trials':>6s} {'runs':>5s} {'steps expected':>14s} {'recorded':>9s} {'duplicates':>10s} "
          f"{'missing':>8s} {'RUNNING':>8s} {'refused':>8s} {'unexpected':>10s}")
    for case, t in totals.items():
        print(f"{case:18s} {t.trials:6d} {t.runs:5d} {t.expected:14d} {t.recorded:9d} {t.duplicates:10d} "
              f"{t.missing:8d} {t.running:8d} {t.refused:8d} {len(t.bad_exits):10d}")


if __name__ == "__main__":
    sys.exit(main())
