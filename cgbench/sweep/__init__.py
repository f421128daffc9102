"""Sweeps: the rows of a paper table × seeds, trained and evaluated as children of one MLflow run.

- :mod:`~cgbench.sweep.spec`: the spec (``runs/*.yaml``), strictly checked;
- :mod:`~cgbench.sweep.plan`: one child per (row, seed), its :class:`ChildStatus`, the time estimate;
- :mod:`~cgbench.sweep.coordination`: the parent run and sweeps of one spec at once;
- :mod:`~cgbench.sweep.child`: one child wherever it runs (:class:`ChildJob`, GPU slots);
- :mod:`~cgbench.sweep.executors`, :mod:`~cgbench.sweep.ray_executor`: where the children run;
- :mod:`~cgbench.sweep.progress`: the progress display;
- :mod:`~cgbench.sweep.stopping`: Ctrl-C and SIGTERM;
- :mod:`~cgbench.sweep.run`: :func:`run_sweep`, all of it in order.
"""

from cgbench.sweep.child import ChildJob, gpu_slots, placed_device
from cgbench.sweep.executors import EXECUTORS, LocalExecutor, make_executor
from cgbench.sweep.plan import Child, ChildStatus, Plan, make_plan, print_plan
from cgbench.sweep.ray_executor import RayExecutor
from cgbench.sweep.run import SweepResult, run_sweep
from cgbench.sweep.spec import Row, Spec, checked_seeds, load_spec
from cgbench.sweep.stopping import SweepInterrupted

__all__ = [
    "EXECUTORS", "Child", "ChildJob", "ChildStatus", "LocalExecutor", "Plan", "RayExecutor", "Row", "Spec",
    "SweepInterrupted", "SweepResult", "checked_seeds", "gpu_slots", "load_spec", "make_executor", "make_plan",
    "placed_device", "print_plan", "run_sweep",
]
