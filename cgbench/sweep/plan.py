"""A sweep's plan: one child per (row, seed) of the spec, where each stands, and (``--dry-run``)
what each trains and about how long that takes here. Nothing is recorded."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable

from cgbench.config import Config, PRESETS, resolve
from cgbench.durations import fmt_seconds
from cgbench.errors import CgbenchError, ConfigError
from cgbench.sweep.spec import Row, Spec, checked_seeds, load_spec


class ChildStatus(StrEnum):
    """Where a child of a sweep stands: what is left to do for it, or why nothing is."""

    PLANNED = "planned"  # no run yet: trained, then evaluated
    RESUME = "resume"  # its run was interrupted (KILLED) or killed hard (RUNNING): resumed from its last checkpoint
    EVALUATE = "evaluate"  # trained, but not scored by every evaluator of the spec yet: evaluated
    FINISHED = "finished"  # trained and scored by every evaluator
    FAILED = "failed"  # its run failed (here or before); delete the run to retry
    UNAVAILABLE = "unavailable"  # its row's method is not installed: never run
    ELSEWHERE = "elsewhere"  # another live sweep holds it: waited for, taken over if that one stops first
    NOT_STARTED = "not started"  # handed to a pool worker after the sweep began to stop: never started


@dataclass
class Child:
    """One (row, seed) of a sweep and where it stands."""

    row: Row
    seed: int
    config: Config | None  # None when the row's method is not installed
    status: ChildStatus = ChildStatus.PLANNED
    run_id: str | None = None
    seconds: float = math.nan

    @property
    def label(self) -> str:
        return f"{self.row.key} seed {self.seed}"

    @property
    def to_do(self) -> bool:
        """Whether it is trained, resumed or evaluated by this sweep."""
        return self.status in (ChildStatus.PLANNED, ChildStatus.RESUME, ChildStatus.EVALUATE)


@dataclass
class Plan:
    """A sweep's children and settings, before anything runs."""

    spec: Spec
    preset: str
    seeds: tuple[int, ...]
    sets: dict[str, Any]
    experiment: str
    children: list[Child]
    installed: dict[str, Any]  # evaluator name -> class
    data_arg: str | None = None  # --data / --dataset, when given

    @property
    def runnable(self) -> list[Child]:
        return [c for c in self.children if c.config is not None]

    @property
    def data(self) -> str:
        return self.runnable[0].config.data if self.runnable else (self.data_arg or "synthcity")

    @property
    def image_size(self) -> int:
        return self.runnable[0].config.image_size if self.runnable else 128


def make_plan(spec_path, seeds, jobs: int, preset: str | None, data: str | None, sets: dict[str, Any] | None,
              experiment: str | None) -> Plan:
    """The spec, checked, and one child per (row, seed); nothing is recorded."""
    from cgbench.plugins import discover

    spec = load_spec(spec_path)
    preset = preset or spec.preset
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    seeds = checked_seeds(list(seeds), "--seeds") if seeds else spec.seeds
    sets = dict(sets or {})
    installed = discover()
    unknown = [e for e in spec.evaluators if e not in installed]
    if unknown:
        raise ConfigError(f"unknown evaluator {unknown[0]!r} in {spec.path}; installed: {', '.join(installed)}")
    children = [Child(row, seed, row_config(spec, row, seed, preset, data, sets)) for row in spec.rows for seed in seeds]
    return Plan(spec, preset, seeds, sets, experiment or spec.experiment or spec.name, children, installed, data)


def resolve_data(plan: Plan, echo: Callable[[str], None]):
    """The dataset of every runnable row (each distinct data and image size once: a missing folder
    is a one-line error before anything is recorded); returns the first row's."""
    from cgbench.data import datasets

    pairs = dict.fromkeys((c.config.data, c.config.image_size) for c in plan.runnable)
    refs = [datasets.resolve(data, size, echo=echo) for data, size in pairs or [(plan.data, plan.image_size)]]
    return refs[0]


def print_plan(plan: Plan, jobs: int, echo: Callable[[str], None]) -> None:
    """``--dry-run``: the children, what each trains, and an estimated time from timing a few steps here."""
    spec = plan.spec
    echo(f"Sweep {spec.name!r} ({spec.path}), preset {plan.preset}, seeds {list(plan.seeds)}, evaluators "
         f"{', '.join(spec.evaluators)}, data {plan.data}, experiment {plan.experiment!r}:")
    total, estimates = 0.0, {}
    for child in plan.children:
        if child.config is None:
            echo(f"  {child.label:28s} not available (method {child.row.overrides.get('method')!r} is not installed)")
            continue
        key = json.dumps({k: v for k, v in child.config.to_dict().items() if k != "seed"}, sort_keys=True)
        if key not in estimates:
            estimates[key] = estimate_seconds(child.config)
        total += estimates[key]
        what = child.config.method + (f" ({child.config.ablation})" if child.config.method == "cyclegan" else "")
        echo(f"  {child.label:28s} {what}: ~{fmt_seconds(estimates[key])} training")
    echo(f"{len(plan.runnable)} runs, about {fmt_seconds(total / jobs)} of training with --jobs {jobs} (estimated "
         "from timing 3 iterations here), plus evaluation and the FCN evaluator if not trained yet. Nothing was run.")


def row_config(spec: Spec, row: Row, seed: int, preset: str, data: str | None, sets: dict[str, Any]) -> Config | None:
    """The config a row trains with ``seed``, checked as ``cgbench run`` checks one before anything is
    recorded (every value, the ablation, the method's norm): a bad row stops the sweep before it
    starts. None when the row's method is not installed (kept as "not available")."""
    from cgbench.methods import METHODS
    from cgbench.methods.cyclegan import get_ablation

    try:
        config = resolve(preset, sets={**spec.common, **row.overrides, **sets}, seed=seed, data=data)
        get_ablation(config.ablation)
        if config.method in METHODS:
            METHODS[config.method].norm_for(config)
    except ConfigError as err:
        raise ConfigError(f"row {row.key!r} of {spec.path}: {err}") from None
    return config if config.method in METHODS else None


def sweep_key(spec: Spec, preset: str, seeds: tuple[int, ...], data: str, sets: dict[str, Any]) -> str:
    """Identifies a sweep, so that the same command finds its parent run again."""
    blob = json.dumps({"spec": Path(spec.path).read_text(), "preset": preset, "seeds": list(seeds), "data": data,
                       "sets": sets}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def estimate_seconds(config: Config, steps: int = 3) -> float:
    """Seconds one training run of ``config`` should take, from timing a few iterations here."""
    import torch

    from cgbench.methods import get_method
    from cgbench.devices import resolve_device
    from cgbench.speed import accelerate

    device = resolve_device(config.device)
    torch.manual_seed(0)
    method = get_method(config.method)(config, device)
    accelerate(method)
    x = torch.rand(config.batch_size, 3, config.image_size, config.image_size, device=device) * 2 - 1
    with method.halves.pinned_threads():
        method.train_step(x, x)  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            method.train_step(x, x)
        per_iter = (time.perf_counter() - start) / steps
    return per_iter * (config.iters if config.iters > 0 else config.epochs * train_images(config))


def train_images(config: Config) -> int:
    """How many training images an epoch has, counted without decoding (1000 if not generated yet)."""
    from cgbench.data.datasets import SYNTHCITY, default_synthcity_dir
    from cgbench.data.layouts import count_photos

    data = config.data
    root = default_synthcity_dir(config.image_size) if data == SYNTHCITY else Path(data)
    try:
        return count_photos(root, "train") or 1000
    except CgbenchError:
        return 1000
