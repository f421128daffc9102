"""Confusion matrix and the three segmentation scores of the CycleGAN paper (Tables 2–5).

A prediction is scored against ground truth by accumulating one C×C confusion matrix ``H`` over
the whole split (rows = ground-truth class, columns = predicted class; pixels whose ground truth
is ``ignore_index`` are dropped) and computing, as the public evaluation script does:

* per-pixel accuracy  = trace(H) / sum(H)
* per-class accuracy  = mean_i  H_ii / rowsum_i
* class IoU           = mean_i  H_ii / (rowsum_i + colsum_i − H_ii)

The functional core (:func:`confusion_matrix`, :func:`scores`) is pure; :class:`ConfusionMatrix`
accumulates over batches in the style of a torchmetrics metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "ConfusionMatrix",
    "Scores",
    "confusion_matrix",
    "public_script_scores",
    "scores",
]

_EPS = 1e-12  # the public script's guard, added to every denominator


def _check_range(values: torch.Tensor, num_classes: int, role: str) -> None:
    """Raise ``ValueError`` naming the first value of ``values`` outside ``0..num_classes-1``."""
    if values.numel() == 0:
        return
    lo, hi = torch.aminmax(values)
    if lo.item() >= 0 and hi.item() < num_classes:
        return
    bad = values[(values < 0) | (values >= num_classes)]
    raise ValueError(
        f"{role} holds class {bad[0].item()} outside 0..{num_classes - 1} on "
        f"{bad.numel()} labelled pixel(s); a segmenter with an extra output channel or an "
        f"unmapped label id would otherwise be miscounted"
    )


def confusion_matrix(
    target: torch.Tensor,
    pred: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
) -> torch.Tensor:
    """Count (ground truth, prediction) pairs into a ``(num_classes, num_classes)`` matrix.

    Args:
        target: ground-truth train ids, any shape (e.g. ``(N, H, W)`` or ``(H, W)``), integer dtype.
        pred: predicted train ids, same shape as ``target``, integer dtype (take the arg-max over
            the class dimension of the logits first).
        num_classes: C, the number of evaluated classes (19 for Cityscapes).
        ignore_index: ground-truth value whose pixels are dropped before counting; ``None``
            keeps every pixel.

    Returns:
        ``torch.int64`` tensor ``H`` on the inputs' device with ``H[i, j]`` = number of pixels of
        ground-truth class ``i`` predicted as class ``j``.

    Raises:
        ValueError: on mismatched shapes, floating-point inputs, or a class id outside
            ``0..C-1`` on a non-ignored pixel (in either tensor).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if target.shape != pred.shape:
        raise ValueError(f"target shape {tuple(target.shape)} != pred shape {tuple(pred.shape)}")
    for role, t in (("target", target), ("pred", pred)):
        if t.is_floating_point() or t.is_complex():
            raise ValueError(f"{role} must hold integer class ids, got dtype {t.dtype}")
    target = target.reshape(-1)
    pred = pred.reshape(-1)
    if ignore_index is not None:
        keep = target != ignore_index
        target = target[keep]
        pred = pred[keep]
    target = target.long()
    pred = pred.long()
    _check_range(target, num_classes, "target")
    _check_range(pred, num_classes, "pred")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@dataclass(frozen=True, eq=False)
class Scores:
    """The paper's three numbers from one accumulated confusion matrix, plus their ingredients.

    Attributes:
        per_pixel_acc: fraction of labelled pixels whose class is predicted correctly.
        per_class_acc: mean over evaluated classes of the class's recall H_ii / rowsum_i.
        class_iou: mean over evaluated classes of H_ii / (rowsum_i + colsum_i − H_ii).
        per_class_acc_vec: per-class recall, length C, NaN for classes excluded from the mean.
        iou_vec: per-class IoU, length C, NaN for classes excluded from the mean.
        evaluated_classes: indices of the classes averaged in ``per_class_acc`` and ``class_iou``.
        n_pixels: number of labelled pixels counted (sum of H).
    """

    per_pixel_acc: float
    per_class_acc: float
    class_iou: float
    per_class_acc_vec: np.ndarray
    iou_vec: np.ndarray
    evaluated_classes: tuple[int, ...]
    n_pixels: int


def _as_float64_hist(hist: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(hist, torch.Tensor):
        hist = hist.detach().cpu().numpy()
    h = np.asarray(hist, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got shape {h.shape}")
    if (h < 0).any():
        raise ValueError("confusion matrix has negative counts")
    return h


def _frozen(vec: np.ndarray) -> np.ndarray:
    vec.setflags(write=False)
    return vec


def scores(hist: torch.Tensor | np.ndarray, present_only: bool = True) -> Scores:
    """Per-pixel accuracy, per-class accuracy and class IoU from a confusion matrix.

    Args:
        hist: ``(C, C)`` counts, rows = ground truth, columns = prediction.
        present_only: if ``True`` (default), classes that never occur in the ground truth
            (row sum 0) are left out of the two class means. On a dataset that uses only a
            subset of the 19 classes, the public script would score every absent class as 0
            and drag the means down for classes nobody could have predicted; on the real
            Cityscapes val split every class occurs, and the result equals the public script's
            up to its 1e-12 guard. If ``False``, reproduce the public script exactly: 1e-12 is
            added to each denominator, so an absent class scores 0 and counts in the means.

    Raises:
        ValueError: if ``hist`` is not square or non-negative, or if ``present_only`` and
            ``hist`` counts no pixel at all (the means would be undefined).

    All arithmetic is in float64.
    """
    h = _as_float64_hist(hist)
    total = h.sum()
    if not present_only:
        acc, cls_acc, iou, acc_vec, iou_vec = public_script_scores(h)
        return Scores(
            per_pixel_acc=acc,
            per_class_acc=cls_acc,
            class_iou=iou,
            per_class_acc_vec=_frozen(acc_vec),
            iou_vec=_frozen(iou_vec),
            evaluated_classes=tuple(range(h.shape[0])),
            n_pixels=int(total),
        )
    if total == 0:
        raise ValueError("empty confusion matrix: no labelled pixel was counted")
    diag = np.diag(h)
    rows = h.sum(axis=1)
    cols = h.sum(axis=0)
    present = rows > 0
    acc_vec = np.full(h.shape[0], np.nan)
    iou_vec = np.full(h.shape[0], np.nan)
    acc_vec[present] = diag[present] / rows[present]
    iou_vec[present] = diag[present] / (rows[present] + cols[present] - diag[present])
    return Scores(
        per_pixel_acc=float(diag.sum() / total),
        per_class_acc=float(acc_vec[present].mean()),
        class_iou=float(iou_vec[present].mean()),
        per_class_acc_vec=_frozen(acc_vec),
        iou_vec=_frozen(iou_vec),
        evaluated_classes=tuple(int(i) for i in np.flatnonzero(present)),
        n_pixels=int(total),
    )


def public_script_scores(
    hist: torch.Tensor | np.ndarray,
) -> tuple[float, float, float, np.ndarray, np.ndarray]:
    """The public evaluation script's formulas, transcribed literally (the parity reference).

    Returns ``(per_pixel_acc, per_class_acc, class_iou, per_class_acc_vec, iou_vec)`` with 1e-12
    added to every denominator, so a class absent from both ground truth and prediction scores 0
    and still counts in the means.
    """
    h = _as_float64_hist(hist)
    acc = np.diag(h).sum() / (h.sum() + _EPS)
    cl_acc = np.diag(h) / (h.sum(1) + _EPS)
    iu = np.diag(h) / (h.sum(1) + h.sum(0) - np.diag(h) + _EPS)
    return float(acc), float(np.mean(cl_acc)), float(np.mean(iu)), cl_acc, iu


class ConfusionMatrix:
    """Accumulates one confusion matrix over a split, batch by batch, then scores it.

    Example::

        metric = ConfusionMatrix(num_classes=19)
        for photo, label in loader:
            metric.update(label, segmenter(photo).argmax(1))
        result = metric.compute()
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        device: torch.device | str | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._hist = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, target: torch.Tensor, pred: torch.Tensor) -> None:
        """Add the counts of one batch (any leading dims; see :func:`confusion_matrix`)."""
        counts = confusion_matrix(target, pred, self.num_classes, self.ignore_index)
        self._hist += counts.to(self._hist.device)

    def compute(self, present_only: bool = True) -> Scores:
        """Score everything accumulated since construction or the last :meth:`reset`."""
        return scores(self._hist, present_only=present_only)

    def reset(self) -> None:
        """Zero the accumulated counts."""
        self._hist.zero_()

    @property
    def hist(self) -> torch.Tensor:
        """A copy of the accumulated ``(C, C)`` int64 counts (rows = ground truth)."""
        return self._hist.clone()
