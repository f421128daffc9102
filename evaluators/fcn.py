"""The FCN score (labels→photo, the paper's Table 2 and 4).

Each validation label map is translated by the run's G into a photo at the generator resolution;
that photo (as the uint8 image a lossless PNG would hold) is resized bilinearly **up to the
ground-truth label resolution** — the labels are never resized — and segmented by the evaluator
FCN, which was trained on real photos degraded the same way (downsampled to the generator's
resolution, upsampled back: :func:`segmenter_input`). Predictions go into one 19×19 confusion
matrix over the split.
"""

from __future__ import annotations

import torch

from cgbench.protocol import fcn_predict, segmenter_input  # noqa: F401 (segmenter_input: re-exported)
from evaluators.base import Batch, ConfusionEvaluator


class FCNScore(ConfusionEvaluator):
    """labels→photo: G's photos segmented by the evaluator FCN (the paper's FCN score)."""

    name = "fcn"
    direction = "labels2photo"
    needs = ("fcn",)
    description = "FCN score: G(labels) upsampled to label resolution, segmented by the evaluator FCN"
    prefix = "eval/labels2photo"
    sample_rows = ("labels", "G(labels)", "FCN(G(labels))")

    def predict(self, batch: Batch) -> torch.Tensor:
        return fcn_predict(self.context.fcn.model, batch.outputs, batch.labels.shape[-2:])
