"""FD-FCN (labels→photo): the Fréchet distance of G's photos to the real validation photos in the
evaluator FCN's own penultimate features — cgbench's measure, not FID.

Each photo goes into the evaluator FCN exactly as the FCN score gives it one (our FCNs:
:func:`cgbench.protocol.segmenter_input`, resized up to the label resolution and scaled to
[-1, 1]; the published FCN-8s: the public script's resize and preprocessing), and the features of
the layer before the score heads are averaged over the image: ``fc`` of :class:`FCN8s` (after its
ReLU), the ResNet-50 backbone's last block of ``fcn_resnet50``, ``fc7`` after its ReLU of the
published FCN-8s. A Gaussian is fitted to each set's features and their Fréchet distance taken
(:mod:`evaluators.frechet`).

It needs nothing but the FCN the suite already trains, so it works offline on every dataset; its
numbers compare only between rows scored by one and the same FCN, never with published FID.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch import nn

from cgbench.errors import CgbenchError, DataError
from cgbench.models.segmenter import FCN8s
from cgbench.plugins import Batch, EvalContext, Evaluator, Result, Segmenter
from cgbench.protocol import segmenter_input
from evaluators.frechet import features_distance

__all__ = ["FDFCN", "fcn_features"]


def _penultimate(segmenter: Segmenter) -> tuple[nn.Module, Callable[[Any], torch.Tensor], str]:
    """(the layer before the score heads, its output → feature map, its name) of the evaluator FCN."""
    model = segmenter.model
    if segmenter.published:
        return model.fc7_cs, torch.relu, "fc7 (after its ReLU)"  # the network applies the ReLU in place, after
    if isinstance(model, FCN8s):
        return model.fc, lambda out: out, "fc (after its ReLU)"
    backbone = getattr(getattr(model, "model", None), "backbone", None)
    if backbone is not None:
        return backbone, lambda out: out["out"], "the backbone's last block"
    raise CgbenchError(f"fd-fcn does not know which layer of this FCN ({type(model).__name__}) feeds its score "
                       "heads; use an FCN of cgbench fcn train (fcn8s or fcn_resnet50) or the published FCN-8s")


def _fcn_input(segmenter: Segmenter, photos: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """What the evaluator FCN sees of uint8 photos (B, 3, S, S), as in the FCN score."""
    parameter = next(segmenter.model.parameters())
    if segmenter.published:
        from cgbench.models.published_fcn import preprocess
        from evaluators.published_fcn import resize_as_public_script

        return preprocess(resize_as_public_script(photos, hw).to(parameter.device)).to(parameter.dtype)
    return segmenter_input(photos.to(parameter.device), hw)


def fcn_features(segmenter: Segmenter, photos: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, D) float64: the FCN's penultimate features of uint8 photos (B, 3, S, S), averaged over
    each image, the photos given to the FCN at the label resolution ``hw``."""
    layer, feature_map, _ = _penultimate(segmenter)
    pooled: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: pooled.append(feature_map(out).mean((-2, -1))))
    try:
        with torch.inference_mode():
            segmenter.model(_fcn_input(segmenter, photos, hw))
    finally:
        handle.remove()
    return pooled[0].double().cpu()


class FDFCN(Evaluator):
    """labels→photo: Fréchet distance to the real val photos in the evaluator FCN's features."""

    name = "fd-fcn"
    direction = "labels2photo"
    needs = ("fcn",)
    metrics = ("fd_fcn",)
    prefix = "eval/labels2photo"
    artifact_dir = "eval/fd-fcn"
    description = ("FD-FCN (lower is better): Fréchet distance of G(labels) to the real val photos in the evaluator "
                   "FCN's pooled penultimate features; cgbench's own measure, not FID")

    def __init__(self, context: EvalContext):
        super().__init__(context)
        split = context.split
        if min(len(split.labels), len(split.photos)) < 2:
            raise DataError(f"fd-fcn compares two sets of images and needs at least 2 of each; the split has "
                            f"{len(split.labels)} label maps and {len(split.photos)} photos")
        self.layer = _penultimate(context.fcn)[2]  # an FCN it cannot read fails here, before any work
        self.hw = tuple(split.labels.shape[-2:])
        self._generated: list[torch.Tensor] = []

    def update(self, batch: Batch) -> None:
        t = time.perf_counter()
        self._generated.append(fcn_features(self.context.fcn, batch.outputs, self.hw))
        self._tick("features", t)

    def compute(self) -> Result:
        t = time.perf_counter()
        real = torch.cat([fcn_features(self.context.fcn, chunk, self.hw)
                          for chunk in self.context.split.photos.split(self.context.batch_size)])
        t = self._tick("features", t)
        generated = torch.cat(self._generated)
        value = features_distance(generated.numpy(), real.numpy())
        self._tick("distance", t)
        return Result({"fd_fcn": value}, details={
            "features": f"the evaluator FCN's {self.layer}, averaged over each image ({real.shape[1]}-d)",
            "n_generated": len(generated), "n_real": len(real),
            "note": "cgbench's own measure: comparable only between rows scored by the same FCN, not with FID"})
