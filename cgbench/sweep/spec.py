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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cgbench.config import Config, PRESETS, apply_overrides, read_utf8, valid_keys
from cgbench.errors import ConfigError

SPEC_KEYS = ("name", "description", "tables", "preset", "seeds", "evaluators", "set", "rows", "experiment")


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
    """Read and strictly validate a sweep spec."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep spec {str(path)!r} does not exist; give a YAML file such as runs/ablations.yaml")
    try:
        raw = yaml.safe_load(read_utf8(path, "sweep spec")) or {}
    except yaml.YAMLError:
        raise ConfigError(f"sweep spec {str(path)!r} is not valid YAML; fix its syntax") from None
    where = f"sweep spec {str(path)!r}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with keys: {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; valid keys: {', '.join(SPEC_KEYS)}")
    if not raw.get("rows"):
        raise ConfigError(f"{where} has no rows; list them under rows: with a row: name each")
    preset = str(raw.get("preset", "cpu"))
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} in {where}; valid presets: {', '.join(PRESETS)}")
    common = raw.get("set") or {}
    if not isinstance(common, dict):
        raise ConfigError(f"set: in {where} must be a mapping of config keys")
    apply_overrides(Config(), common, source=f"{where} (set)")
    rows, seen = [], set()
    for i, item in enumerate(raw["rows"]):
        if not isinstance(item, dict) or "row" not in item:
            raise ConfigError(f"row {i + 1} of {where} needs a row: name (e.g. row: cyclegan)")
        key = str(item["row"])
        if key in seen:
            raise ConfigError(f"row {key!r} appears twice in {where}")
        seen.add(key)
        overrides = {k: v for k, v in item.items() if k != "row"}
        bad = sorted(set(overrides) - set(valid_keys()))
        if bad:
            raise ConfigError(f"unknown key {bad[0]!r} in row {key!r} of {where}; valid keys: row, "
                              + ", ".join(valid_keys()))
        apply_overrides(Config(), overrides, source=f"row {key!r} of {where}")
        rows.append(Row(key, overrides))
    return Spec(
        name=str(raw.get("name", path.stem)), path=str(path), rows=tuple(rows), preset=preset,
        seeds=checked_seeds(raw.get("seeds", [0]), f"seeds: in {where}"),
        evaluators=tuple(str(e) for e in raw.get("evaluators", ["fcn", "seg"])),
        tables=tuple(int(t) for t in raw.get("tables", [])), common=dict(common),
        experiment=raw.get("experiment"), description=str(raw.get("description", "")),
    )


def checked_seeds(seeds: Any, where: str) -> tuple[int, ...]:
    """A sweep's seeds: a non-empty list of distinct integers >= 0 (the same seed twice would train
    the same run twice and count it as two seeds)."""
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ConfigError(f"{where} must be a list of seeds such as [0, 1, 2]")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"{where} must be integers >= 0, got {list(seeds)}")
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ConfigError(f"{where} names seed {repeated[0]} more than once ({list(seeds)}); give each seed once")
    return tuple(seeds)
