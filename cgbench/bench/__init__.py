"""``cgbench bench``: where a training step's time goes, and how fast it is against two yardsticks.

For each preset the command builds the method twice from one seed: the *fast* step (the speed
settings the run would use, :mod:`cgbench.speed`) and the *plain* step (eager fp32, NCHW,
per-parameter Adam, one backward: :data:`cgbench.speed.PLAIN_SETTINGS`). It then

* times both on the same batches, in alternating blocks of a few steps, so a noisy machine
  slows both alike; it reports medians and the 10th-90th percentile spread of each, and their
  ratio as the median over adjacent block pairs of (plain block median / fast block median),
  which pairs steps taken seconds apart and so resists drift in the machine's speed;
* splits the fast step into data wait, forward + backward, optimiser and image pool
  (optimiser hooks and a timed pool), and measures tracking with the real training loop
  (:func:`cgbench.training.train` into a throwaway MLflow store);
* counts the step's FLOPs (``torch.utils.flop_counter``) and measures the step's compute floor:
  every distinct convolution of the step (forward and backward, as aten runs them) timed alone
  at its best (memory format, thread count), weighted by how often the step runs it
  (:func:`cgbench.bench.floor.compute_floor`). No step can beat it, so the step's share of the floor (floor / step
  time, at most 1) says how close the step comes to its own kernels at their best. A large
  matmul's throughput is kept as a reference figure only: convolutions can run faster than it;
* reports peak memory (RSS; and CUDA memory on a GPU);
* times evaluation through the real path (:func:`cgbench.scoring.stream` with the ``fcn``
  evaluator): images per second through G and the FCN (an untrained FCN of the preset's
  architecture: same cost as a trained one), and the confusion-matrix update in megapixels/s;
* on a GPU, also times the step with and without CUDA graphs, the GPU's busy fraction, and the
  floor from the GPU's measured fp32 and TF32 matmul peaks (:mod:`cgbench.bench.gpu`).

With ``--share N`` it measures instead how many runs one device takes at once: the aggregate
throughput of N processes training side by side (:mod:`cgbench.bench.share`).

Rooms: :mod:`cgbench.bench.paths` (the paths built and timed in alternating blocks),
:mod:`cgbench.bench.floor` (the compute floor), :mod:`cgbench.bench.gpu` (the GPU's figures),
:mod:`cgbench.bench.step` (one preset measured), :mod:`cgbench.bench.share` (runs sharing a
device), :mod:`cgbench.bench.report` (the machine, the printed lines, the MLflow run).
"""

from cgbench.bench.report import format_result, log_to_mlflow, machine
from cgbench.bench.share import SHARE_SECONDS, share_throughput
from cgbench.bench.step import PresetResult, bench_preset

__all__ = ["SHARE_SECONDS", "PresetResult", "bench_preset", "format_result", "log_to_mlflow", "machine",
           "share_throughput"]
