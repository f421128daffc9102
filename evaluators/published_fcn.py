"""The published FCN-8s scored the public script's way: resize, forward, arg-max, per-image histograms.

The CycleGAN and pix2pix FCN scores come from the authors' public Cityscapes script, which for each
validation image

1. resizes the generated image to the label resolution with ``scipy.misc.imresize`` (Pillow's
   bilinear filter on the uint8 image, returning uint8: :func:`resize_as_public_script`);
2. feeds it, BGR minus the mean, to ``fcn-8s-cityscapes`` and takes the arg-max over all **20**
   outputs (:func:`published_fcn_predict`);
3. adds ``fast_hist(label, pred, 19)`` to a running histogram (:func:`public_fast_hist`):
   ``np.bincount(19 * gt + pred, minlength=361).reshape(19, 19)`` over the pixels with ground
   truth 0..18. The network's 20th output (index 19) does not fit that formula: a pixel of ground
   truth ``g < 18`` predicted 19 lands in bin ``19 * (g + 1) + 0``, i.e. it is counted as ground
   truth ``g + 1`` predicted road; and a pixel of ground truth 18 predicted 19 makes bin 361, the
   count has 362 bins, and the script drops the whole image (``return 0``);
4. scores the summed histogram with 1e-12 added to every denominator, so a class absent from
   both ground truth and prediction scores 0 and counts in the means.

:class:`PublicScriptConfusion` reproduces that exactly (it is what the published numbers contain)
and counts how often the quirk struck; with ``strict=True`` a pixel predicted 19 is instead a miss
of its own ground-truth class (in its row, in no class's column) and no image is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from cgbench.data.labels import NUM_CLASSES
from cgbench.models.published_fcn import NUM_OUTPUTS, channels_first, preprocess
from cgbench.confusion import Scores, scores

__all__ = [
    "PublicScriptConfusion",
    "PublishedScores",
    "public_fast_hist",
    "published_fcn_predict",
    "resize_as_public_script",
]

EXTRA = NUM_OUTPUTS - 1  # the network's 20th output, which no ground-truth class has


def _labelled(gt: torch.Tensor) -> torch.Tensor:
    """The pixels the public script counts: ground truth 0..18."""
    return (gt >= 0) & (gt < NUM_CLASSES)


def resize_as_public_script(images_uint8: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """``(B, 3, h, w)`` or ``(B, h, w, 3)`` uint8 RGB → ``(B, 3, H, W)`` uint8 at ``hw = (H, W)``.

    The public script called ``scipy.misc.imresize(im, (H, W))``, which hands the uint8 image to
    Pillow's ``resize`` with the bilinear filter and returns Pillow's uint8 result; this calls the
    same Pillow filter, so it rounds where the script rounded (after each of Pillow's two 1-D
    passes). ``torch``'s bilinear resize rounded to uint8 is not a substitute: on 256→1024×2048
    it differs by 1 in about a fifth of the values. Runs on the CPU, image by image; returns on
    the input's device.
    """
    images = channels_first(images_uint8)
    height, width = hw
    if tuple(images.shape[-2:]) == (height, width):
        return images
    resized = [np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
               for image in images.permute(0, 2, 3, 1).cpu().numpy()]
    return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).to(images.device)


def published_fcn_predict(
    model: torch.nn.Module,
    images_uint8: torch.Tensor,
    label_hw: tuple[int, int],
    batch_size: int = 1,
    progress=None,
) -> torch.Tensor:
    """The published FCN-8s's prediction for generated images, as the public script made it.

    Args:
        model: a :class:`~cgbench.models.published_fcn.PublishedFCN8s` in eval mode (e.g. from
            :func:`cgbench.models.caffemodel.load_published_fcn`); inputs are cast to its device
            and dtype.
        images_uint8: ``(B, 3, s, s)`` or ``(B, s, s, 3)`` uint8 RGB generated images.
        label_hw: the ground truth's ``(H, W)``; images are resized to it
            (:func:`resize_as_public_script`), the labels never are.
        batch_size: images per forward pass (the public script ran one at a time; the result is
            the same up to float rounding).
        progress: optional ``tqdm`` bar, advanced by the number of images after each pass (create
            it over the whole split for an ETA).

    Returns:
        ``(B, H, W)`` int64 arg-max over all 20 outputs, on the model's device: values 0..19.
    """
    parameter = next(model.parameters())
    images = resize_as_public_script(images_uint8, label_hw)
    predictions = []
    with torch.inference_mode():
        for chunk in images.split(batch_size):
            logits = model(preprocess(chunk.to(parameter.device)).to(parameter.dtype))
            predictions.append(logits.argmax(1))
            if progress is not None:
                progress.update(len(chunk))
    return torch.cat(predictions)


def public_fast_hist(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor | None:
    """One image's histogram exactly as the public ``fast_hist(gt.flatten(), pred.flatten(), 19)``.

    ``gt``: train ids (255 and anything outside 0..18 ignored); ``pred``: 0..19, same shape.
    Returns the ``(19, 19)`` int64 counts (rows = ground truth; a pixel of ground truth g < 18
    predicted 19 counted as g + 1 predicted 0), or ``None`` where the script drops the image
    (a pixel of ground truth 18 predicted 19 makes 362 bins).
    """
    keep = _labelled(gt)
    counts = torch.bincount(NUM_CLASSES * gt[keep].long() + pred[keep].long(), minlength=NUM_CLASSES**2)
    if counts.numel() != NUM_CLASSES**2:
        return None
    return counts.view(NUM_CLASSES, NUM_CLASSES)


@dataclass(frozen=True)
class PublishedScores:
    """The published FCN's scores and how much its 20th output touched them.

    Attributes:
        scores: the three numbers and their per-class vectors (19 classes).
        pixels_predicted_19: labelled pixels (ground truth 0..18) predicted as the 20th output,
            over every image, dropped ones included.
        images_scored: images counted in the histogram.
        images_dropped: images the public script drops (always 0 when ``strict``).
        strict: whether class 19 was scored as a miss instead of the public script's way.
    """

    scores: Scores
    pixels_predicted_19: int
    images_scored: int
    images_dropped: int
    strict: bool


class PublicScriptConfusion:
    """Accumulates the public script's per-image histograms over a split, then scores them.

    ``strict=False`` (default) reproduces the script, quirks included; ``strict=True`` keeps a
    20-column histogram whose extra column (prediction 19) counts in each class's row total and
    in no class's column, and drops nothing.
    """

    def __init__(self, strict: bool = False, device: torch.device | str | None = None) -> None:
        self.strict = strict
        size = NUM_OUTPUTS if strict else NUM_CLASSES
        self._hist = torch.zeros(size, size, dtype=torch.int64, device=device)
        self.pixels_predicted_19 = self.images_scored = self.images_dropped = 0

    def update(self, gt: torch.Tensor, pred: torch.Tensor) -> None:
        """Add a batch: ``gt`` (B, H, W) train ids, ``pred`` (B, H, W) arg-max over the 20 outputs."""
        if gt.shape != pred.shape or gt.dim() != 3:
            raise ValueError(f"expected gt and pred of one (B, H, W) shape, got {tuple(gt.shape)} and "
                             f"{tuple(pred.shape)}")
        if pred.numel() and not 0 <= int(pred.min()) <= int(pred.max()) <= EXTRA:
            raise ValueError(f"pred must hold the arg-max over {NUM_OUTPUTS} outputs (0..{EXTRA})")
        hist_of = self._strict_hist if self.strict else public_fast_hist
        for image_gt, image_pred in zip(gt, pred):
            self.pixels_predicted_19 += int((_labelled(image_gt) & (image_pred == EXTRA)).sum())
            counts = hist_of(image_gt, image_pred)
            if counts is None:
                self.images_dropped += 1
                continue
            self._hist += counts.to(self._hist.device)
            self.images_scored += 1

    @staticmethod
    def _strict_hist(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """(20, 20) counts over ground truth 0..18 (row 19 stays empty), column 19 = predicted 19."""
        keep = _labelled(gt)
        counts = torch.bincount(NUM_OUTPUTS * gt[keep].long() + pred[keep].long(), minlength=NUM_OUTPUTS**2)
        return counts.view(NUM_OUTPUTS, NUM_OUTPUTS)

    def compute(self, present_only: bool = False) -> PublishedScores:
        """Score what was accumulated. ``present_only=False`` (default) is the public script's
        arithmetic (1e-12 denominators: a class never seen scores 0 and counts in the means);
        ``True`` leaves classes absent from the ground truth out of the means, as
        :func:`cgbench.confusion.scores` does by default."""
        result = scores(self._hist, present_only)
        if self.strict:  # class 19 is a column of misses, not a class: means over the 19 classes
            keep = [c for c in result.evaluated_classes if c < NUM_CLASSES]
            acc_vec, iou_vec = result.per_class_acc_vec[:NUM_CLASSES], result.iou_vec[:NUM_CLASSES]
            result = Scores(result.per_pixel_acc, float(acc_vec[keep].mean()), float(iou_vec[keep].mean()),
                            acc_vec, iou_vec, tuple(keep), result.n_pixels)
        return PublishedScores(result, self.pixels_predicted_19, self.images_scored, self.images_dropped,
                               self.strict)

    @property
    def hist(self) -> torch.Tensor:
        """A copy of the accumulated counts: (19, 19), or (20, 20) with an empty last row if strict."""
        return self._hist.clone()
