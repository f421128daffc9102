"""The FCN score (labels→photo, the paper's Table 2 and 4).

Each validation label map is translated by the run's G into a photo at the generator resolution;
that photo (as the uint8 image a lossless PNG would hold) is resized bilinearly **up to the
ground-truth label resolution** — the labels are never resized — and segmented by the evaluator
FCN, which was trained on real photos degraded the same way (downsampled to the generator's
resolution, upsampled back: :func:`cgbench.protocol.segmenter_input`). Predictions go into one
19×19 confusion matrix over the split.

With the published FCN-8s (``--fcn caffe:PATH``) the score is the public script's instead
(:mod:`evaluators.published_fcn`): its resize, its preprocessing, the arg-max over 20 outputs and
its per-image histograms, quirks included unless ``strict``; how often the 20th output struck is
recorded in ``scores.json``.
"""

from __future__ import annotations

import torch

from cgbench.plugins import Batch, EvalContext, Result
from cgbench.protocol import fcn_predict
from evaluators.base import ConfusionEvaluator
from evaluators.published_fcn import PublicScriptConfusion, published_fcn_predict


class FCNScore(ConfusionEvaluator):
    """labels→photo: G's photos segmented by the evaluator FCN (the paper's FCN score)."""

    name = "fcn"
    direction = "labels2photo"
    needs = ("fcn",)
    description = "FCN score: G(labels) upsampled to label resolution, segmented by the evaluator FCN"
    prefix = "eval/labels2photo"
    sample_rows = ("labels", "G(labels)", "FCN(G(labels))")

    def __init__(self, context: EvalContext):
        super().__init__(context)
        self.published = context.fcn.published
        if self.published:
            self.confusion = PublicScriptConfusion(strict=context.fcn.strict)

    def predict(self, batch: Batch) -> torch.Tensor:
        if self.published:
            return published_fcn_predict(self.context.fcn.model, batch.outputs, tuple(batch.labels.shape[-2:]))
        return fcn_predict(self.context.fcn.model, batch.outputs, batch.labels.shape[-2:])

    def compute(self) -> Result:
        if not self.published:
            return super().compute()
        published = self.confusion.compute()
        result = super().compute_from(published.scores, self.confusion.hist[:19, :19].cpu())
        result.details.update(protocol="the public script (published FCN-8s)", strict=published.strict,
                              pixels_predicted_19=published.pixels_predicted_19,
                              images_scored=published.images_scored, images_dropped=published.images_dropped)
        return result
