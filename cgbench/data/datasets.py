"""Where a run's data comes from: ``--dataset synthcity`` (the embedded default) or ``--data DIR``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cgbench.errors import DataError

SYNTHCITY = "synthcity"


def default_synthcity_dir() -> Path:
    """``$CGBENCH_SYNTHCITY`` or ``./data/synthcity``."""
    return Path(os.environ.get("CGBENCH_SYNTHCITY", "data/synthcity"))


@dataclass(frozen=True)
class DatasetRef:
    name: str  # "synthcity" or the folder's name
    root: Path


def resolve(data: str, generate: bool = True, echo=print) -> DatasetRef:
    """The dataset folder for a config's ``data`` value, generating SynthCity on first use."""
    if data == SYNTHCITY:
        root = default_synthcity_dir()
        if not (root / "synthcity.json").is_file():
            if not generate:
                raise DataError(f"SynthCity is not generated at {root}; run `cgbench data synth --out {root}`")
            from cgbench.data.synthcity import generate as synth

            echo(f"Generating SynthCity (the embedded default dataset) in {root} ...")
            synth(root)
        return DatasetRef(SYNTHCITY, root)
    root = Path(data).expanduser()
    if not root.is_dir():
        raise DataError(
            f"dataset folder {str(root)!r} does not exist; give --data a Cityscapes, pix2pix or CycleGAN "
            "dataset folder, or use --dataset synthcity"
        )
    name = SYNTHCITY if (root / "synthcity.json").is_file() else root.resolve().name
    return DatasetRef(name, root)
