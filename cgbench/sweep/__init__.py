"""Sweeps: the rows of a paper table × seeds, trained and evaluated as children of one MLflow run."""

from cgbench.sweep.run import (SweepInterrupted, SweepResult, gpu_slots, make_executor, make_plan, placed_device,
                               run_sweep)
from cgbench.sweep.spec import Row, Spec, checked_seeds, load_spec
