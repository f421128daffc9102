"""The evaluator network behind the FCN score: training it, finding it, loading it.

- :mod:`~cgbench.fcn.training`: ``train_fcn``, the FCN trained the paper's way and tracked in MLflow;
- :mod:`~cgbench.fcn.ceiling`: its own scores, the ceiling and the degradation ladder;
- :mod:`~cgbench.fcn.checkpoint`: its checkpoint, and bare state dicts, read into a segmenter;
- :mod:`~cgbench.fcn.lookup`: ``load_fcn`` by run id, file or the published FCN-8s, or the latest
  one trained on the same data (``find_fcn_run``);
- :mod:`~cgbench.fcn.prepare`: ``ensure_fcn``, a sweep's FCN, found again or trained once.
"""

from cgbench.fcn.ceiling import degradation_ladder, ground_truth_scores, record_ladder
from cgbench.fcn.checkpoint import CHECKPOINT_FORMAT, checkpoint_state, segmenter_from_checkpoint
from cgbench.fcn.lookup import find_fcn_run, load_fcn
from cgbench.fcn.prepare import ensure_fcn
from cgbench.fcn.training import FCNTrainResult, train_fcn, validate_fcn_config

__all__ = [
    "CHECKPOINT_FORMAT", "FCNTrainResult", "checkpoint_state", "degradation_ladder", "ensure_fcn", "find_fcn_run",
    "ground_truth_scores", "load_fcn", "record_ladder", "segmenter_from_checkpoint", "train_fcn",
    "validate_fcn_config",
]
