"""Where a run came from, as it records it: the code version (the git commit, ``-dirty`` when
modified), the versions of the packages it ran with (tags ``cgbench.pkg.<name>`` and
``environment.json``), its full resolved config (``config.json``) and its datasets as MLflow
inputs whose source is the folder they were read from."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag

from cgbench.protocol import Tags

CONFIG_ARTIFACT = "config.json"  # every run's full resolved config
ENVIRONMENT_ARTIFACT = "environment.json"  # the package versions it ran with
PACKAGES = ("torch", "torchvision", "mlflow", "numpy", "cityscapesScripts", "cgbench")
SOURCE_TREE = Path(__file__).resolve().parents[2]  # the checkout cgbench runs from (a git tree, when it is one)


def code_version() -> str:
    """The git commit of the source tree (with ``-dirty`` when modified), else the package version."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(SOURCE_TREE), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode == 0:
            dirty = subprocess.run(
                ["git", "-C", str(SOURCE_TREE), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=5,
            )
            return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "cgbench-" + metadata.version("cgbench")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def package_tags(versions: dict[str, str]) -> dict[str, str]:
    """The package versions as run tags (``cgbench.pkg.<name>``)."""
    return {Tags.package(name): version for name, version in versions.items()}


def dataset_input(name: str, source_uri: str, digest: str, context: str) -> DatasetInput:
    """An MLflow dataset input: ``name`` with ``digest``, read from the folder ``source_uri``, used
    for ``context`` ("training", "evaluation")."""
    dataset = MetaDataset(source=_FolderSource(source_uri), name=name, digest=digest)
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])


class _FolderSource(DatasetSource):
    """An MLflow dataset source that is a local folder (or any URI the user gave)."""

    def __init__(self, uri: str):
        self._uri = uri

    @staticmethod
    def _get_source_type() -> str:
        return "folder"

    def load(self, **kwargs: Any) -> str:
        return self._uri

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> _FolderSource:
        return cls(str(raw_source))

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self._uri}

    @classmethod
    def from_dict(cls, source_dict: dict[str, Any]) -> _FolderSource:
        return cls(source_dict["uri"])
