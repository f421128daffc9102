"""One scoring path: sources of translated validation images, the engine that feeds them through
the evaluators, and the writing of results into MLflow runs (see :mod:`cgbench.scoring.engine`)."""

from cgbench.scoring.engine import (
    DEFAULT_METRICS, Scored, Source, StreamStats, evaluator, evaluator_options, load_val_split, score,
    select_evaluators, stream,
)

__all__ = ["DEFAULT_METRICS", "Scored", "Source", "StreamStats", "evaluator", "evaluator_options", "load_val_split",
           "score", "select_evaluators", "stream"]
