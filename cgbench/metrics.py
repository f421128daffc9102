"""The paper's scores as metrics for any training loop, in the style of torchmetrics.

    from cgbench.metrics import FCNScore, SegScore

    fcn_score = FCNScore(fcn="path/to/fcn.pt")         # or an FCN run id, caffe:PATH, or a torch module
    for labels, generated in batches:                   # generated: uint8 (B, 3, h, w) photos
        fcn_score.update(generated, labels)             # labels: train ids (B, H, W), 255 ignored
    scores = fcn_score.compute()                        # .per_pixel_acc, .per_class_acc, .class_iou,
                                                        # .per_class_acc_vec, .iou_vec
    seg_score = SegScore()                              # photo→labels: colour label images
    seg_score.update(generated_label_maps, labels)

Both are thin adapters over the evaluator plugins ``fcn`` and ``seg``, found through the
``cgbench.evaluators`` entry points as ``cgbench eval`` finds them: each ``update`` hands the
plugin one :class:`~cgbench.plugins.Batch`, so the numbers are the ones ``cgbench eval`` records
for the same images, whichever FCN segments them (the published FCN-8s included, scored the public
script's way). A generated image is resized up to the label resolution, labels are never resized,
and one confusion matrix is accumulated over everything passed to ``update``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import torch

from cgbench.confusion import Scores
from cgbench.errors import CgbenchError
from cgbench.plugins import Batch, EvalContext, Evaluator, Segmenter

__all__ = ["FCNScore", "SegScore"]


def _images(generated: Any, device: torch.device) -> torch.Tensor:
    """uint8 images as (B, 3, h, w) on ``device``, from a tensor or array, channels first or last."""
    x = torch.as_tensor(np.asarray(generated) if not isinstance(generated, torch.Tensor) else generated)
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.dtype != torch.uint8:
        raise CgbenchError(f"generated images must be uint8 (B, 3, h, w) or (B, h, w, 3), got {x.dtype} "
                           f"{tuple(x.shape)}; convert with ((x + 1) * 127.5).round().clamp(0, 255).byte()")
    if x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    return x.to(device)


def _labels(train_ids: Any, device: torch.device) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(train_ids) if not isinstance(train_ids, torch.Tensor) else train_ids)
    return (y[None] if y.dim() == 2 else y).to(device)


class _Score:
    """One evaluator plugin (``evaluator``) fed batch by batch, with no split and no sample grid."""

    evaluator: ClassVar[str]

    def __init__(self, device: str | torch.device = "cpu", segmenter: Segmenter | None = None):
        from cgbench.scoring import evaluator

        self.device = torch.device(device)
        self._plugin_class: type[Evaluator] = evaluator(self.evaluator)
        self._loaders = {"fcn": lambda: segmenter} if segmenter is not None else {}
        self.reset()

    @torch.inference_mode()
    def update(self, generated: Any, train_ids: Any) -> None:
        """Add a batch: generated uint8 images and the ground-truth train ids (255 = ignored)."""
        labels = _labels(train_ids, self.device)
        images = _images(generated, self.device)
        if len(images) != len(labels):
            raise CgbenchError(f"{len(images)} generated images for {len(labels)} label maps; give one per map")
        index = torch.arange(self._seen, self._seen + len(labels))
        self._plugin.update(Batch(index, [f"{i:06d}" for i in index.tolist()], labels, None, images))
        self._seen += len(labels)

    def compute(self) -> Scores:
        """Per-pixel accuracy, per-class accuracy, class IoU and the per-class vectors, so far."""
        return self._plugin.compute().scores

    def reset(self) -> None:
        """Forget every batch: a fresh plugin on the same FCN."""
        context = EvalContext(None, None, self.device, n_samples=0, loaders=self._loaders)
        self._plugin = self._plugin_class(context)
        self._seen = 0


def _segmenter(fcn: Any, device: torch.device, tracking_uri: str | None) -> Segmenter:
    """``fcn`` as the segmenter the ``fcn`` evaluator receives, on ``device``."""
    if isinstance(fcn, Segmenter):
        return dataclasses.replace(fcn, model=fcn.model.to(device).eval())
    if isinstance(fcn, torch.nn.Module):
        from cgbench.models.published_fcn import PublishedFCN8s

        return Segmenter(fcn.to(device).eval(), source=type(fcn).__name__, published=isinstance(fcn, PublishedFCN8s))
    from cgbench.fcn import load_fcn
    from cgbench.tracking import client_for

    return load_fcn(str(fcn), client_for(tracking_uri), device, echo=lambda *_: None)


class FCNScore(_Score):
    """labels→photo: generated photos segmented by the evaluator FCN (the FCN score).

    ``fcn``: a torch module ((N, 3, H, W) in [-1, 1] → (N, 19, H, W) logits), the published
    FCN-8s (:class:`~cgbench.models.published_fcn.PublishedFCN8s`, or ``caffe:PATH``), a
    :class:`~cgbench.plugins.Segmenter`, a ``.pt`` file, or the id of a ``cgbench fcn train`` run
    (read from ``tracking_uri``)."""

    evaluator = "fcn"

    def __init__(self, fcn: Any, device: str | torch.device = "cpu", tracking_uri: str | None = None):
        self.segmenter = _segmenter(fcn, torch.device(device), tracking_uri)
        super().__init__(device, self.segmenter)


class SegScore(_Score):
    """photo→labels: generated colour label images decoded by the nearest train-class colour."""

    evaluator = "seg"
