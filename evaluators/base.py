"""The base of the built-in confusion-matrix evaluators (fcn, seg): the paper's three numbers from
one confusion matrix accumulated over the split, and the sample grid of what they saw.

The evaluator interface itself (:class:`~cgbench.plugins.Evaluator`, :class:`~cgbench.plugins.Batch`,
:class:`~cgbench.plugins.EvalContext`, :class:`~cgbench.plugins.Result`) and plugin discovery are
cgbench's (:mod:`cgbench.plugins`); a third-party evaluator may subclass either
:class:`~cgbench.plugins.Evaluator` or :class:`ConfusionEvaluator`.
"""

from __future__ import annotations

import time
from typing import ClassVar

import torch
import torch.nn.functional as F

from cgbench.confusion import ConfusionMatrix, Scores
from cgbench.data.labels import IGNORE_INDEX, NUM_CLASSES, colorize
from cgbench.plugins import Batch, EvalContext, Evaluator, Result
from cgbench.protocol import SCORE_METRICS

__all__ = ["ConfusionEvaluator", "display_size", "to_display"]


class ConfusionEvaluator(Evaluator):
    """An evaluator that predicts train ids at ground-truth resolution and scores them with the
    paper's three numbers from one confusion matrix accumulated over the split.

    Subclasses implement :meth:`predict`; ``update`` adds the batch to the matrix (one vectorised
    ``bincount``, no per-image loop) and keeps the first ``context.n_samples`` images for the grid.
    """

    metrics = SCORE_METRICS
    sample_rows: ClassVar[tuple[str, str, str]] = ("input", "output", "prediction")

    def __init__(self, context: EvalContext):
        super().__init__(context)
        self.confusion = ConfusionMatrix(NUM_CLASSES, IGNORE_INDEX, device=context.device)
        self._samples: dict[str, list[torch.Tensor]] = {}
        self._n_kept = 0

    def predict(self, batch: Batch) -> torch.Tensor:
        """Train ids (B, H, W) at the resolution of ``batch.labels``."""
        raise NotImplementedError

    def update(self, batch: Batch) -> None:
        t = time.perf_counter()
        pred = self.predict(batch)
        t = self._tick("predict", t)
        self.confusion.update(batch.labels, pred)
        self._tick("confusion", t)
        self._keep_samples(batch, pred)

    def compute(self) -> Result:
        return self.compute_from(self.confusion.compute(), self.confusion.hist.cpu())

    def compute_from(self, scores: Scores, confusion: torch.Tensor) -> Result:
        """The result of ``scores`` (and the matrix they come from), with the kept samples."""
        metrics = {k: getattr(scores, k) for k in SCORE_METRICS}
        samples = {k: torch.cat(v) for k, v in self._samples.items()}
        return Result(metrics, scores=scores, confusion=confusion, samples=samples)

    def _keep_samples(self, batch: Batch, pred: torch.Tensor) -> None:
        take = min(self.context.n_samples - self._n_kept, len(batch.index))
        if take <= 0:
            return
        hw = display_size(batch.labels.shape[-2:])
        rows = {
            self.sample_rows[0]: to_display(batch.inputs[:take].add(1).mul(127.5), hw),
            self.sample_rows[1]: to_display(batch.outputs[:take], hw),
            self.sample_rows[2]: to_display(colorize(pred[:take].to(torch.uint8)).permute(0, 3, 1, 2), hw),
            "ground truth": to_display(colorize(batch.labels[:take]).permute(0, 3, 1, 2), hw),
        }
        for key, images in rows.items():
            self._samples.setdefault(key, []).append(images.cpu())
        self._n_kept += take


def display_size(hw: tuple[int, int] | torch.Size, max_height: int = 256) -> tuple[int, int]:
    h, w = int(hw[0]), int(hw[1])
    if h <= max_height:
        return h, w
    return max_height, max(1, round(w * max_height / h))


def to_display(images: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """uint8 (or float in [0, 255]) images resized (nearest) to ``hw``, as uint8."""
    x = images.float()
    if tuple(x.shape[-2:]) != tuple(hw):
        x = F.interpolate(x, size=hw, mode="nearest-exact")
    return x.round().clamp(0, 255).to(torch.uint8)
