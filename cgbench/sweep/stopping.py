"""How a sweep stops: Ctrl-C, or SIGTERM as Ctrl-C; runs in flight checkpoint, and once the sweep
is stopping, more of either signal is ignored so that the stop is not cut short."""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

from cgbench.errors import SweepInterrupted

RESUME_HINT = "sweep interrupted; runs in flight were checkpointed; run the same command again to resume"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a sweep as Ctrl-C does (in the main thread; elsewhere signals are left alone)."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def ignore_stop_signals() -> None:
    """Once a sweep is stopping, more Ctrl-C or SIGTERM must not cut the stop short (and the
    sweep's manager process, which the sweep itself shuts down, ignores both from its start)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass
