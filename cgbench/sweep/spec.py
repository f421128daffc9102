"""A sweep's spec: the rows of a paper table, the preset, the seeds and the evaluators, strictly checked.

A spec (``runs/*.yaml``) names the rows of a study, the preset, the seeds and the evaluators::

    name: ablations
    tables: [4, 5]
    preset: cpu
    seeds: [0, 1, 2]
    evaluators: [fcn, seg]
    set: {}                  # config keys applied to every row
    rows:
      - {row: cycle-only, ablation: cycle-only}
      - {row: pix2pix, method: pix2pix}

Every key is checked: an unknown key is an error listing the valid ones, and row keys other than
``row`` must be config keys. ``row`` names the table row its children fill (their ``cgbench.row``),
so two rows of one ablation that differ in a setting stay two rows. A row whose method is not
installed is kept in the plan as "not available" and is never run (the report shows it as not run).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cgbench.config import Config, PRESETS, RANGES, apply_overrides, valid_keys
from cgbench.errors import ConfigError
from cgbench.inputs import read_yaml, shown

SPEC_KEYS = ("name", "description", "tables", "preset", "seeds", "evaluators", "set", "rows", "experiment")
#: The longest name (the spec's, its experiment's, a row's) and description a spec may give.
MAX_NAME, MAX_DESCRIPTION = 200, 4096


@dataclass(frozen=True)
class Row:
    key: str  # the table row it fills (cgbench.row)
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Spec:
    name: str
    path: str
    rows: tuple[Row, ...]
    preset: str = "cpu"
    seeds: tuple[int, ...] = (0,)
    evaluators: tuple[str, ...] = ("fcn", "seg")
    tables: tuple[int, ...] = ()
    common: dict[str, Any] = field(default_factory=dict)
    experiment: str | None = None
    description: str = ""


def load_spec(path: str | Path) -> Spec:
    """Read and strictly validate a sweep spec: every field by its type, before any is used."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep spec {str(path)!r} does not exist; give a YAML file such as runs/ablations.yaml")
    raw = read_yaml(path, "sweep spec") or {}
    where = f"sweep spec {str(path)!r}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with keys: {', '.join(SPEC_KEYS)}")
    unknown = sorted((k for k in raw if k not in SPEC_KEYS), key=str)
    if unknown:
        raise ConfigError(f"unknown key {shown(unknown[0])} in {where}; valid keys: {', '.join(SPEC_KEYS)}")
    preset = text(raw.get("preset", "cpu"), f"preset: in {where}", MAX_NAME)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {shown(preset)} in {where}; valid presets: {', '.join(PRESETS)}")
    common = raw.get("set") or {}
    if not isinstance(common, dict):
        raise ConfigError(f"set: in {where} must be a mapping of config keys, not {shown(common)}")
    apply_overrides(Config(), common, source=f"{where} (set)")
    experiment = raw.get("experiment")
    return Spec(
        name=text(raw.get("name", path.stem), f"name: in {where}", MAX_NAME), path=str(path),
        rows=_rows(raw.get("rows"), where), preset=preset,
        seeds=checked_seeds(raw.get("seeds", [0]), f"seeds: in {where}"),
        evaluators=tuple(text(e, f"evaluators: in {where}", MAX_NAME) for e in
                         _list(raw.get("evaluators", ["fcn", "seg"]), f"evaluators: in {where}", "[fcn, seg]")),
        tables=_tables(raw.get("tables", []), f"tables: in {where}"), common=dict(common),
        experiment=None if experiment is None else text(experiment, f"experiment: in {where}", MAX_NAME),
        description=text(raw.get("description", ""), f"description: in {where}", MAX_DESCRIPTION, empty=True),
    )


def text(value: Any, where: str, limit: int, empty: bool = False) -> str:
    """``value`` as text: a string (or a number, as YAML reads ``2024``) of at most ``limit``
    characters; a list, mapping, boolean or nothing is a one-line error naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where} must be text, not {shown(value)}")
    value = str(value)
    if len(value) > limit or not (value.strip() or empty):
        raise ConfigError(f"{where} must be text of 1 to {limit} characters, not {shown(value)}")
    return value


def _list(value: Any, where: str, example: str) -> list:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list such as {example}, not {shown(value)}")
    return value


def _tables(value: Any, where: str) -> tuple[int, ...]:
    """The paper's tables a spec fills: a list of their numbers (1: the perceptual study, 2-5)."""
    numbers = _list(value, where, "[4, 5]")
    if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 5 for n in numbers):
        bad = next(n for n in numbers if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 5)
        raise ConfigError(f"{where} must list table numbers from 1 to 5 such as [4, 5], not {shown(bad)}")
    return tuple(numbers)


def _rows(value: Any, where: str) -> tuple[Row, ...]:
    """The rows: a non-empty list of mappings, each with a distinct ``row:`` name and config keys."""
    if not value:
        raise ConfigError(f"{where} has no rows; list them under rows: with a row: name each")
    rows, seen = [], set()
    for i, item in enumerate(_list(value, f"rows: in {where}", "[{row: cyclegan, ablation: cyclegan}]")):
        if not isinstance(item, dict) or "row" not in item:
            raise ConfigError(f"row {i + 1} of {where} needs a row: name (e.g. row: cyclegan)")
        key = text(item["row"], f"the row: name of row {i + 1} of {where}", MAX_NAME)
        if key in seen:
            raise ConfigError(f"row {key!r} appears twice in {where}")
        seen.add(key)
        overrides = {k: v for k, v in item.items() if k != "row"}
        bad = sorted((k for k in overrides if k not in valid_keys()), key=str)
        if bad:
            raise ConfigError(f"unknown key {shown(bad[0])} in row {key!r} of {where}; valid keys: row, "
                              + ", ".join(valid_keys()))
        apply_overrides(Config(), overrides, source=f"row {key!r} of {where}")
        rows.append(Row(key, overrides))
    return tuple(rows)


def checked_seeds(seeds: Any, where: str) -> tuple[int, ...]:
    """A sweep's seeds: a non-empty list of distinct integers in NumPy's range (the same seed twice
    would train the same run twice and count it as two seeds)."""
    highest = RANGES["seed"][2]
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ConfigError(f"{where} must be a list of seeds such as [0, 1, 2], not {shown(seeds)}")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= highest]
    if bad:
        raise ConfigError(f"{where} must be integers from 0 to {highest}, not {shown(bad[0])}")
    repeated = sorted(s for s, n in Counter(seeds).items() if n > 1)
    if repeated:
        raise ConfigError(f"{where} names seed {repeated[0]} more than once; give each seed once")
    return tuple(seeds)
