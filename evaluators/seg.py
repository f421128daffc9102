"""Photo→labels scoring (the paper's Tables 3 and 5): no network, the colours are the answer.

Each validation photo is translated by the run's F into a colour label image at the generator
resolution (kept as the uint8 image a lossless PNG would hold), resized bilinearly up to the
ground-truth label resolution — the labels are never resized, as for the FCN score — and decoded
pixel by pixel to the nearest of the 19 official train-class colours (L2 in RGB; black/void is
*not* a candidate, so every pixel gets a class as in the public script). Upsampling before
decoding keeps the protocol's rule that ground truth is never resized; decoding first and
upsampling the ids (nearest) would differ only along class boundaries.
"""

from __future__ import annotations

import torch

from cgbench.plugins import Batch, EvalContext
from cgbench.protocol import colour_predict
from evaluators.base import ConfusionEvaluator


class SegScore(ConfusionEvaluator):
    """photo→labels: F's colour label maps decoded by nearest train-class colour."""

    name = "seg"
    direction = "photo2labels"
    needs = ()
    description = "photo→labels: F(photo) upsampled to label resolution, nearest train-class colour per pixel"
    prefix = "eval/photo2labels"
    sample_rows = ("photo", "F(photo)", "nearest colour")

    def __init__(self, context: EvalContext):
        super().__init__(context)
        if not getattr(context.split, "paired", True):
            from cgbench.errors import DataError

            raise DataError("the validation split pairs no photo with its labels (an unaligned set with "
                            "different counts), so photo→labels cannot be scored; use a paired dataset")

    def predict(self, batch: Batch) -> torch.Tensor:
        return colour_predict(batch.outputs, batch.labels.shape[-2:])
