"""A run's checkpoints: ``checkpoints/step_XXXXXXXX.pt`` among its MLflow artifacts.

The policy, in one place: a checkpoint is written atomically (a temporary file in the same folder,
flushed to disk, then renamed) when the artifact store is a local folder, and uploaded otherwise;
the newest :data:`KEPT` are kept; loading takes the newest checkpoint that reads back
(``weights_only=True``), falling back to an older one when the newest was cut short or damaged.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import torch

CHECKPOINT_DIR = "checkpoints"
KEPT = 2


def local_path(uri: str) -> Path | None:
    """The filesystem path of a local artifact URI, or None for a remote store."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri)
    return None


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.pt"


class CheckpointStore:
    """The checkpoints of run ``run_id`` (``artifact_dir``: its local artifact folder, when known)."""

    def __init__(self, client, run_id: str, artifact_dir: Path | None = None):
        self.client = client
        self.run_id = run_id
        self._artifact_dir = artifact_dir

    @property
    def local_folder(self) -> Path | None:
        root = self._artifact_dir
        if root is None:
            root = local_path(self.client.get_run(self.run_id).info.artifact_uri)
        return None if root is None else root / CHECKPOINT_DIR

    def save(self, state: dict[str, Any], step: int) -> None:
        """Write the checkpoint of ``step``; keep the newest :data:`KEPT`."""
        folder = self.local_folder
        if folder is None:
            with tempfile.TemporaryDirectory() as tmpdir:
                path = Path(tmpdir) / checkpoint_name(step)
                torch.save(state, path)
                self.client.log_artifact(self.run_id, str(path), CHECKPOINT_DIR)
            return
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".*.tmp"):  # left by a writer that was killed (this run has one writer)
            stale.unlink(missing_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".", suffix=".tmp", delete=False) as tmp:
            try:
                torch.save(state, tmp)
                tmp.flush()
                os.fsync(tmp.fileno())
            except BaseException:
                os.unlink(tmp.name)
                raise
        os.replace(tmp.name, folder / checkpoint_name(step))
        for old in sorted(folder.glob("step_*.pt"))[:-KEPT]:
            old.unlink()

    def names(self) -> list[str]:
        """The run's checkpoint artifacts, newest first."""
        files = self.client.list_artifacts(self.run_id, CHECKPOINT_DIR)
        return sorted((f.path for f in files if f.path.endswith(".pt")), reverse=True)

    def load_newest(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The newest checkpoint that reads back; None when the run has none that does."""
        with tempfile.TemporaryDirectory() as tmpdir:
            for name in self.names():
                try:
                    path = self.client.download_artifacts(self.run_id, name, tmpdir)
                    return torch.load(path, map_location=map_location, weights_only=True)
                except Exception:  # cut short, damaged, not a checkpoint, or pruned meanwhile: the previous one
                    continue
        return None


def load_run_checkpoint(client, run_id: str, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The newest checkpoint of a run that loads (an older one when the newest cannot be read)."""
    return CheckpointStore(client, run_id).load_newest(map_location)
