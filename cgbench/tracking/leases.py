"""One writer at a time: leases kept in the MLflow store itself, so every process that uses the
store — on this machine or another, over sqlite or a tracking server — sees them.

A lease is on a name: ``run/<run_id>`` (writing that run: training it or resuming it),
``child/<parent run>/<row>/<seed>`` (doing a sweep's child), ``fcn/<digest>/<size>`` (training the
evaluator FCN of some data), ``sweep/<key>`` (creating a sweep's parent run), ``nulls/...``.

Taking a lease *creates* the MLflow experiment ``.cgbench-lease/<name>/<generation>``, with tags
naming the holder (host, process, a random token) and its heartbeat. Experiment names are unique
in every MLflow store (a database constraint in sqlite, PostgreSQL and MySQL alike), so of two
processes that try to create the same generation at once exactly one succeeds: the other is
refused, or (:meth:`Lease.wait`) waits for the holder to finish. Releasing deletes the experiment:
MLflow hides it and keeps its name taken. While a lease is held a daemon thread beats it every
:data:`HEARTBEAT_SECONDS` (one tag write: nothing the training loop notices).

A lease whose holder is gone is taken over by creating the next generation: the holder is gone
when it released the lease, when it ran on this machine and its process no longer exists (so
``kill -9`` then ``--resume`` needs no wait), or when its heartbeat is older than
:data:`STALE_SECONDS`. A holder that was only slow sees the newer generation at its next beat,
marks itself :attr:`Lease.lost`, and writes no more (:class:`LeaseLost`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from cgbench.errors import LeaseHeld, LeaseLost

PREFIX = ".cgbench-lease/"
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0  # twelve missed beats: only for holders on other machines


def _host_id() -> str:
    """This machine: its name and boot id (containers may share a name; a reboot reuses pids)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()[:8]
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot; "" where /proc has no answer), so a
    reused pid is not mistaken for the holder."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""


def _process_exists(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    return not started or _process_start(pid) in ("", started)


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) one generation of a lease, as its experiment's tags say."""

    generation: int
    experiment_id: str
    host: str
    pid: int
    started: str
    token: str
    heartbeat: float
    released: bool

    def gone(self) -> bool:
        if self.released:
            return True
        if self.host == _host_id():
            return not _process_exists(self.pid, self.started)
        return time.time() - self.heartbeat > STALE_SECONDS

    def describe(self) -> str:
        age = max(0.0, time.time() - self.heartbeat)
        return f"process {self.pid} on {self.host.partition('/')[0]}, last heartbeat {age:.0f} s ago"


class Lease:
    """The lease on ``name`` in the store of ``client`` (see the module's docstring)."""

    def __init__(self, client, name: str):
        self.client, self.name = client, name
        self.token = secrets.token_hex(8)
        self.generation = 0
        self.experiment_id: str | None = None
        self.lost = False

    @property
    def held(self) -> bool:
        return self.experiment_id is not None and not self.lost

    def _experiment_name(self, generation: int) -> str:
        return f"{PREFIX}{self.name}/{generation}"

    def holder(self) -> Holder | None:
        """The newest generation's holder (None: the lease was never taken)."""
        from mlflow.entities import ViewType

        folder = f"{PREFIX}{self.name}/"
        pattern = folder.replace("%", "_").replace("'", "_")  # LIKE matches more; the exact names are kept below
        found = self.client.search_experiments(view_type=ViewType.ALL, filter_string=f"name LIKE '{pattern}%'",
                                               max_results=1000)
        numbered = [(int(g), e) for e in found
                    if e.name.startswith(folder) and (g := e.name[len(folder):]).isdigit()]
        if not numbered:
            return None
        generation, e = max(numbered, key=lambda ge: ge[0])
        tags = e.tags
        return Holder(generation, e.experiment_id, tags.get("host", ""), int(tags.get("pid", "0")),
                      tags.get("started", ""), tags.get("token", ""), float(tags.get("heartbeat", "0")),
                      e.lifecycle_stage == "deleted")

    def try_acquire(self) -> Holder | None:
        """Take the lease if it is free or its holder is gone; returns None when taken, else the
        live holder that keeps it."""
        from mlflow.exceptions import MlflowException

        current = self.holder()
        if current is not None and not current.gone():
            return current
        generation = current.generation + 1 if current is not None else 1
        tags = {"host": _host_id(), "pid": str(os.getpid()), "started": _process_start(os.getpid()),
                "token": self.token, "heartbeat": repr(time.time())}
        try:
            self.experiment_id = self.client.create_experiment(self._experiment_name(generation), tags=tags)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.holder() or current  # another process created this generation first
        self.generation, self.lost = generation, False
        _HEARTBEAT.add(self)
        return None

    def acquire(self, what: str) -> None:
        """Take the lease now, or raise :class:`LeaseHeld` naming ``what`` and its holder."""
        holder = self.try_acquire()
        if holder is not None:
            raise LeaseHeld(f"{what} is being written by another process ({holder.describe()}); wait for it to end "
                            "or stop it: one writer at a time (a lease left by a process that died is taken over)")

    def wait(self, echo: Callable[[str], None] | None = None, poll: float = 2.0) -> None:
        """Take the lease, waiting while a live holder keeps it."""
        said = False
        while (holder := self.try_acquire()) is not None:
            if echo is not None and not said:
                echo(f"Waiting for {holder.describe()}, which holds {self.name} ...")
                said = True
            time.sleep(poll)

    @contextlib.contextmanager
    def hold(self, echo: Callable[[str], None] | None = None) -> Iterator[Lease]:
        """Hold the lease for a block (:meth:`wait` to take it), released at the block's end."""
        self.wait(echo)
        try:
            yield self
        finally:
            self.release()

    def beat(self) -> None:
        """Renew the heartbeat; mark the lease lost when a newer generation exists."""
        if not self.held:
            return
        if self.client.get_experiment_by_name(self._experiment_name(self.generation + 1)) is not None:
            self.lost = True
            _HEARTBEAT.discard(self)
            return
        self.client.set_experiment_tag(self.experiment_id, "heartbeat", repr(time.time()))

    def check(self) -> None:
        """Raise :class:`LeaseLost` when this process may no longer write."""
        if self.lost:
            raise LeaseLost(f"another process took over {self.name} (this one looked dead to it); this process "
                            "stopped without writing more")

    def release(self) -> None:
        """Give the lease up (no-op when not held)."""
        _HEARTBEAT.discard(self)
        if self.held:
            self.client.delete_experiment(self.experiment_id)
        self.experiment_id = None


class _Heartbeat:
    """One daemon thread per process beating every held lease."""

    def __init__(self) -> None:
        self.leases: set[Lease] = set()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, lease: Lease) -> None:
        with self.lock:
            self.leases.add(lease)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="cgbench-lease-heartbeat", daemon=True)
                self.thread.start()

    def discard(self, lease: Lease) -> None:
        with self.lock:
            self.leases.discard(lease)

    def _run(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self.lock:
                leases = list(self.leases)
            for lease in leases:
                try:
                    lease.beat()
                except Exception:  # the store is unreachable for a moment: beat again next time
                    pass


_HEARTBEAT = _Heartbeat()
