"""Every exception a user can meet, each with the exit status the command line ends with
(``exit_code``): 2 a usage or input error (one line naming the problem and the fix; nothing was
run), 1 a run that failed or stopped, 130 interrupted (checkpointed; the run can be resumed).

Some also say what becomes of the MLflow run they end (``run_status``, read by
:meth:`cgbench.tracking.RunTracker.ending`) and whether their message is recorded on it
(``record_failure``). Those that cross process boundaries (sweep workers) rebuild from their
fields when unpickled (``__reduce__``).
"""


class KnownError(Exception):
    """An exception the command line reports as one line, ending with :attr:`exit_code`."""

    exit_code = 1


class CgbenchError(KnownError):
    """A problem with the user's input: names the problem and the fix, in one line."""

    exit_code = 2


class DataError(CgbenchError):
    """A dataset folder, file or image that cannot be used."""


class ConfigError(CgbenchError):
    """An unknown or invalid configuration key or value."""


class LeaseHeld(CgbenchError):
    """Another live process holds the lease (:mod:`cgbench.tracking.leases`): nothing was touched."""


class LeaseLost(KnownError):
    """Another process took this one's lease over (it looked dead); this one must write no more."""

    exit_code = 1
    run_status = None  # RunTracker.ending(): leave the run's status to the new holder


class StoreUnavailable(KnownError):
    """The tracking store did not answer for ``CGBENCH_SERVER_WAIT_S`` seconds: the run stops, is
    marked FAILED if the store answers by then, and ``--resume`` continues it."""

    exit_code = 1
    run_status = "FAILED"

    def __reduce__(self):  # crosses process boundaries (sweep workers) with its message
        return type(self), self.args


class NonFiniteLoss(KnownError):
    """A loss term became NaN or infinite; the run is marked FAILED."""

    exit_code = 1
    record_failure = True  # the message becomes the run's cgbench.failure tag

    def __init__(self, iteration: int, term: str, value: float):
        super().__init__(f"loss term {term!r} is {value} at iteration {iteration}; the run is marked FAILED "
                         "(try a lower lr, or gan_mode=lsgan)")
        self.iteration, self.term, self.value = iteration, term, value

    def __reduce__(self):  # rebuilt from its fields when it crosses a process boundary (sweep workers)
        return type(self), (self.iteration, self.term, self.value)


class RanksDiverged(KnownError):
    """The processes of a distributed run hold different weights; the run is marked FAILED."""

    exit_code = 1
    record_failure = True

    def __init__(self, iteration: int, digests: list[str]):
        super().__init__(f"the {len(digests)} processes hold different weights at iteration {iteration} "
                         f"(digests {', '.join(d[:12] for d in digests)}); the run is marked FAILED")
        self.iteration, self.digests = iteration, digests

    def __reduce__(self):
        return type(self), (self.iteration, self.digests)


class Interrupted(KnownError):
    """Ctrl-C or SIGTERM: the run was checkpointed and marked KILLED."""

    exit_code = 130
    run_status = "KILLED"

    def __init__(self, run_id: str, iteration: int):
        super().__init__(f"interrupted at iteration {iteration}; checkpointed. Continue with: "
                         f"cgbench run --resume {run_id}")
        self.run_id, self.iteration = run_id, iteration

    def __reduce__(self):
        return type(self), (self.run_id, self.iteration)


class SweepInterrupted(KnownError):
    """Ctrl-C or SIGTERM during a sweep: runs in flight were checkpointed; the same command resumes."""

    exit_code = 130
    run_status = "KILLED"
