"""Where a run's data comes from: ``--dataset synthcity`` (the embedded default) or ``--data DIR``."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from cgbench.errors import DataError

SYNTHCITY = "synthcity"


def default_synthcity_dir(image_size: int) -> Path:
    """``$CGBENCH_SYNTHCITY``, else ``./data/synthcity-<image_size>``.

    The embedded dataset is generated at the generator's resolution (height ``image_size``, twice
    that wide, Cityscapes' aspect), so a CPU-sized run does not pay for labels it cannot use.
    """
    return Path(os.environ.get("CGBENCH_SYNTHCITY", f"data/synthcity-{image_size}"))


def _check_version(root: Path) -> None:
    """Refuse a SynthCity set written by another version of the generator (other scenes)."""
    from cgbench.data.synthcity import GENERATOR_VERSION, MANIFEST

    try:
        version = json.loads((root / MANIFEST).read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        version = None
    if version != GENERATOR_VERSION:
        raise DataError(f"SynthCity at {root} was written by generator version {version}, this cgbench "
                        f"writes version {GENERATOR_VERSION}: delete that folder to regenerate it, or set "
                        "CGBENCH_SYNTHCITY to another folder")


@dataclass(frozen=True)
class DatasetRef:
    name: str  # "synthcity" or the folder's name
    root: Path


def resolve(data: str, image_size: int = 128, generate: bool = True, echo=print) -> DatasetRef:
    """The dataset folder for a config's ``data`` value, generating SynthCity on first use."""
    if data == SYNTHCITY:
        root = default_synthcity_dir(image_size)
        if not (root / "synthcity.json").is_file():
            if not generate:
                command = shlex.join(["cgbench", "data", "synth", "--out", str(root), "--size", str(image_size)])
                raise DataError(f"SynthCity is not generated at {root}; run `{command}`")
            from cgbench.data.synthcity import generate as synth

            echo(f"Generating SynthCity (the embedded default dataset) at {2 * image_size}x{image_size} in {root} ...")
            synth(root, size=image_size)
        _check_version(root)
        return DatasetRef(SYNTHCITY, root)
    root = Path(data).expanduser()
    if not root.is_dir():
        raise DataError(
            f"dataset folder {str(root)!r} does not exist; give --data a Cityscapes, pix2pix or CycleGAN "
            "dataset folder, or use --dataset synthcity"
        )
    name = SYNTHCITY if (root / "synthcity.json").is_file() else root.resolve().name
    return DatasetRef(name, root)
