"""Places the suite writes to, checked before anything is written: a folder that is a file, lies
under a file, or cannot be written is a one-line error naming the place and the fix."""

from __future__ import annotations

import os
from pathlib import Path

from cgbench.errors import CgbenchError

#: Kernel interfaces, never a place for results.
SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


def nearest_existing(path: Path) -> Path:
    """``path`` itself when it exists, else its nearest existing ancestor."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def under_system_root(path: Path) -> bool:
    path = Path(os.path.abspath(path))
    return any(path == root or root in path.parents for root in SYSTEM_ROOTS)


def check_creatable(path: str | os.PathLike, what: str, kind: str = "folder") -> Path:
    """Refuse, in one line, a ``path`` (a ``kind``: "folder" or "file") that cannot be created or
    written: under /proc, /sys or /dev, under a file, in a folder without write permission, or (a
    folder) an existing file / (a file) an existing folder. Returns the path."""
    path = Path(path).expanduser()
    if under_system_root(path):
        raise CgbenchError(f"{what} {path} lies under {', '.join(map(str, SYSTEM_ROOTS))}, which hold no files of "
                           "yours; pick a folder of your own")
    if path.exists():
        if kind == "folder" and not path.is_dir():
            raise CgbenchError(f"{what} {path} is a file, not a folder; pick a folder (or remove the file)")
        if kind == "file" and path.is_dir():
            raise CgbenchError(f"{what} {path} is a folder, not a file; give a file's path")
    existing = path if kind == "folder" and path.is_dir() else nearest_existing(path.parent)
    if not existing.is_dir():
        raise CgbenchError(f"{what} {path} lies under the file {existing}, so it cannot be created; pick another place")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CgbenchError(f"{what} {path} cannot be created or written: no write permission in {existing}; pick a "
                           "place you can write to")
    return path


def make_folder(path: str | os.PathLike, what: str) -> Path:
    """:func:`check_creatable`, then create the folder; an OS refusal is a one-line error too."""
    path = check_creatable(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CgbenchError(f"cannot create {what} {path} ({err.strerror}); pick a place you can write to") from None
    return path
