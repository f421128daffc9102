"""The MLflow tracking store a command uses, checked before MLflow sees it, and a new sqlite store
created exactly once.

:func:`checked_uri` resolves the URI (``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else
MLflow's default) and refuses in one line: an unknown scheme; a sqlite database or a file store
under /proc, /sys or /dev, under a file, in a folder that cannot be written, or (sqlite) a file
that is not an SQLite database; and a server (http, https, postgresql, mysql, mssql) that does not
answer within :data:`PROBE_SECONDS` — MLflow's own client would retry for minutes.

:func:`ensure_sqlite_store` creates a new sqlite store under an exclusive file lock beside it
(``<db>.lock``): the first process builds MLflow's schema in a temporary file and renames it into
place, so commands started at once on a new file all find one complete store, and a creation cut
short (Ctrl-C, kill) leaves no half-migrated database behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlparse

from cgbench.errors import CgbenchError
from cgbench.paths import check_creatable

PROBE_SECONDS = 5.0
SQLITE_HEADER = b"SQLite format 3\x00"
#: The schemes MLflow's tracking client knows ("" is a plain path: a file store).
SCHEMES = ("", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")
DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}


def resolve_uri(uri: str | None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default (``sqlite:///mlflow.db`` here)."""
    if uri:
        return uri
    import mlflow

    return mlflow.get_tracking_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite URI (``sqlite:///rel.db`` relative, ``sqlite:////abs.db``
    absolute); None for an in-memory database or another scheme."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or not parsed.path or parsed.path in ("/", "/:memory:"):
        return None
    return Path(unquote(parsed.path[1:]))


def checked_uri(uri: str | None) -> str:
    """The resolved tracking URI, after the checks in the module's docstring."""
    uri = resolve_uri(uri)
    scheme = urlparse(uri).scheme.split("+")[0]  # postgresql+psycopg2 -> postgresql
    if len(scheme) == 1:  # a Windows drive letter: a path
        scheme = ""
    if scheme not in SCHEMES:
        raise CgbenchError(f"tracking URI {uri!r} has the unknown scheme {scheme!r}; use sqlite:///FILE.db, a folder, "
                           "or http(s)://HOST:PORT of an MLflow server")
    if scheme == "sqlite":
        _check_sqlite(uri)
    elif scheme in ("", "file"):
        check_creatable(unquote(urlparse(uri).path) if scheme == "file" else uri, "the MLflow store folder")
    elif scheme in DEFAULT_PORTS:
        _probe(uri)
    return uri


def _check_sqlite(uri: str) -> None:
    db = sqlite_path(uri)
    if db is None:
        return
    check_creatable(db, "the MLflow database", kind="file")
    if db.exists() and db.stat().st_size > 0:
        with open(db, "rb") as f:
            if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise CgbenchError(f"{db} is not an SQLite database, so it cannot be the MLflow store; give another "
                                   "file (a new one is created) in --tracking-uri sqlite:///FILE.db")


@functools.lru_cache(maxsize=16)
def _probe(uri: str) -> None:
    """Fail fast, in one line, when nothing answers at a server's address (once per process)."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0]
    host, port = parsed.hostname or "localhost", parsed.port or DEFAULT_PORTS[scheme]
    try:
        if scheme in ("http", "https"):
            _http_answers(uri)
        else:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except (OSError, urllib.error.URLError) as err:
        reason = getattr(err, "reason", None) or err.strerror or type(err).__name__
        if isinstance(err, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
            reason = f"no answer within {PROBE_SECONDS:g} s"
        raise CgbenchError(f"no tracking server answers at {uri} ({reason}); start it (e.g. mlflow server --port "
                           f"{port}) or pass another --tracking-uri") from None


def _http_answers(uri: str) -> None:
    """Any HTTP answer (even an error status) or a TLS handshake means a server is there."""
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_SECONDS).close()
    except urllib.error.HTTPError:
        return
    except urllib.error.URLError as err:
        if isinstance(err.reason, ssl.SSLError):
            return
        raise


@contextlib.contextmanager
def creation_lock(db: Path) -> Iterator[None]:
    """An exclusive lock on ``<db>.lock`` (released when the block ends, or the process dies)."""
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_sqlite_store(uri: str, artifact_root: str | None) -> None:
    """Create the sqlite store of ``uri`` when its file does not exist yet (see the module's docstring)."""
    db = sqlite_path(uri)
    if db is None or (db.exists() and db.stat().st_size > 0):
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with creation_lock(db):
        if db.exists() and db.stat().st_size > 0:
            return  # another process created it while this one waited
        for stale in db.parent.glob(f".{db.name}.creating-*"):  # left by a creation that was killed
            stale.unlink()
        tmp = db.with_name(f".{db.name}.creating-{os.getpid()}")
        try:
            _build_schema(tmp, artifact_root)
            os.replace(tmp, db)
        finally:
            tmp.unlink(missing_ok=True)


def _build_schema(db: Path, artifact_root: str | None) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{db.resolve()}", artifact_root or str(db.resolve().parent / "mlruns"))
    store.engine.dispose()  # no connection stays open on the file that is renamed
