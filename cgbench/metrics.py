"""The paper's scores as metrics for any training loop, in the style of torchmetrics.

    from cgbench.metrics import FCNScore, SegScore

    fcn_score = FCNScore(fcn="path/to/fcn.pt")         # or an FCN run id, or a torch module
    for labels, generated in batches:                   # generated: uint8 (B, 3, h, w) photos
        fcn_score.update(generated, labels)             # labels: train ids (B, H, W), 255 ignored
    scores = fcn_score.compute()                        # .per_pixel_acc, .per_class_acc, .class_iou,
                                                        # .per_class_acc_vec, .iou_vec
    seg_score = SegScore()                              # photo→labels: colour label images
    seg_score.update(generated_label_maps, labels)

Both use the very functions the ``fcn`` and ``seg`` evaluators use (:func:`cgbench.protocol.fcn_predict`,
:func:`cgbench.protocol.colour_predict`, :class:`evaluators.confusion.ConfusionMatrix`): a generated
image is resized up to the label resolution, labels are never resized, and one confusion matrix
is accumulated over everything passed to ``update``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cgbench.data.labels import IGNORE_INDEX, NUM_CLASSES
from cgbench.errors import CgbenchError
from cgbench.protocol import colour_predict, fcn_predict
from evaluators.base import Segmenter
from evaluators.confusion import ConfusionMatrix, Scores

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
    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.confusion = ConfusionMatrix(NUM_CLASSES, IGNORE_INDEX, device=self.device)

    def predict(self, images: torch.Tensor, hw: torch.Size) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def update(self, generated: Any, train_ids: Any) -> None:
        """Add a batch: generated uint8 images and the ground-truth train ids (255 = ignored)."""
        labels = _labels(train_ids, self.device)
        images = _images(generated, self.device)
        if len(images) != len(labels):
            raise CgbenchError(f"{len(images)} generated images for {len(labels)} label maps; give one per map")
        self.confusion.update(labels, self.predict(images, labels.shape[-2:]))

    def compute(self) -> Scores:
        """Per-pixel accuracy, per-class accuracy, class IoU and the per-class vectors, so far."""
        return self.confusion.compute()

    def reset(self) -> None:
        self.confusion.reset()


class FCNScore(_Score):
    """labels→photo: generated photos segmented by the evaluator FCN (the FCN score).

    ``fcn``: a torch module ((N, 3, H, W) in [-1, 1] → (N, 19, H, W) logits), a
    :class:`~evaluators.base.Segmenter`, a ``.pt`` file, or the id of a ``cgbench fcn train`` run
    (read from ``tracking_uri``)."""

    def __init__(self, fcn: Any, device: str | torch.device = "cpu", tracking_uri: str | None = None):
        super().__init__(device)
        if isinstance(fcn, Segmenter):
            model = fcn.model
        elif isinstance(fcn, torch.nn.Module):
            model = fcn
        else:
            from cgbench.fcn import load_fcn
            from cgbench.tracking import client_for

            model = load_fcn(str(fcn), client_for(tracking_uri), self.device, echo=lambda *_: None).model
        self.model = model.to(self.device).eval()

    def predict(self, images: torch.Tensor, hw: torch.Size) -> torch.Tensor:
        return fcn_predict(self.model, images, hw)


class SegScore(_Score):
    """photo→labels: generated colour label images decoded by the nearest train-class colour."""

    def predict(self, images: torch.Tensor, hw: torch.Size) -> torch.Tensor:
        return colour_predict(images, hw)
