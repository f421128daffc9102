"""Training a method and recording it in MLflow.

- :mod:`.run`: a training run from request to status (new, a sweep's child, or resumed);
- :mod:`.setup`: what a run trains with (device, data, method, sampler), built before it opens;
- :mod:`.loop`: the loop, top to bottom: batch → train_step → log → checkpoint;
- :mod:`.state`: what checkpoints hold for each rank of a distributed run, and the weights check.
"""

from cgbench.training.loop import TrainResult, lr_factor
from cgbench.training.run import train
from cgbench.training.setup import load_training_data

__all__ = ["TrainResult", "load_training_data", "lr_factor", "train"]
