"""Confusion matrix and scores: hand-computed cases, parity with the public script, edge cases."""

import numpy as np
import pytest
import torch

from cgbench.confusion import (
    ConfusionMatrix,
    Scores,
    confusion_matrix,
    public_script_scores,
    scores,
)

# A 3-class, 2×5 image; 255 marks ignored ground truth.
TARGET = torch.tensor([[0, 0, 0, 1, 1],
                       [2, 2, 2, 255, 255]])
PRED = torch.tensor([[0, 0, 1, 1, 2],
                     [2, 2, 0, 1, 0]])
# Counted by hand over the 8 labelled pixels (rows = ground truth, cols = prediction):
#   gt 0 -> pred 0, 0, 1      gt 1 -> pred 1, 2      gt 2 -> pred 2, 2, 0
HAND_HIST = [[2, 1, 0],
             [0, 1, 1],
             [1, 0, 2]]


def test_hand_computed_matrix():
    hist = confusion_matrix(TARGET, PRED, num_classes=3)
    assert hist.dtype == torch.int64
    assert hist.tolist() == HAND_HIST


def test_hand_computed_scores():
    s = scores(torch.tensor(HAND_HIST))
    # trace 5 over 8 pixels
    assert s.per_pixel_acc == pytest.approx(5 / 8)
    # recalls 2/3, 1/2, 2/3
    assert s.per_class_acc == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    # IoU_i = H_ii / (row_i + col_i - H_ii): 2/(3+3-2), 1/(2+2-1), 2/(3+3-2)
    np.testing.assert_allclose(s.iou_vec, [2 / 4, 1 / 3, 2 / 4])
    assert s.class_iou == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert s.evaluated_classes == (0, 1, 2)
    assert s.n_pixels == 8


def test_hand_computed_absent_class():
    # Class 2 never occurs in the ground truth but is predicted once (a false positive).
    hist = np.array([[3, 0, 1],
                     [1, 2, 0],
                     [0, 0, 0]])
    s = scores(hist, present_only=True)
    assert s.evaluated_classes == (0, 1)
    assert s.per_pixel_acc == pytest.approx(5 / 7)
    assert s.per_class_acc == pytest.approx((3 / 4 + 2 / 3) / 2)
    # IoU_0 = 3/(4+4-3), IoU_1 = 2/(3+2-2)
    assert s.class_iou == pytest.approx((3 / 5 + 2 / 3) / 2)
    assert np.isnan(s.per_class_acc_vec[2]) and np.isnan(s.iou_vec[2])

    public = scores(hist, present_only=False)
    assert public.evaluated_classes == (0, 1, 2)
    assert public.per_class_acc == pytest.approx((3 / 4 + 2 / 3 + 0) / 3)
    assert public.class_iou == pytest.approx((3 / 5 + 2 / 3 + 0) / 3)
    assert public.iou_vec[2] == 0.0


def _random_full_hist(rng: np.random.Generator, c: int) -> np.ndarray:
    hist = rng.integers(0, 1000, size=(c, c))
    hist[np.diag_indices(c)] += rng.integers(1, 5000, size=c)  # every class occurs
    return hist


@pytest.mark.parametrize("present_only", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_parity_with_public_script(seed, present_only):
    rng = np.random.default_rng(seed)
    hist = _random_full_hist(rng, 19)
    acc, cls_acc, iou, acc_vec, iou_vec = public_script_scores(hist)
    s = scores(torch.from_numpy(hist), present_only=present_only)
    assert s.per_pixel_acc == pytest.approx(acc, abs=1e-9)
    assert s.per_class_acc == pytest.approx(cls_acc, abs=1e-9)
    assert s.class_iou == pytest.approx(iou, abs=1e-9)
    np.testing.assert_allclose(s.per_class_acc_vec, acc_vec, atol=1e-9)
    np.testing.assert_allclose(s.iou_vec, iou_vec, atol=1e-9)
    assert s.evaluated_classes == tuple(range(19))


def test_present_only_false_is_public_script_exactly_with_absent_classes():
    rng = np.random.default_rng(7)
    hist = _random_full_hist(rng, 19)
    hist[[4, 16]] = 0  # wall and train never occur in the ground truth
    acc, cls_acc, iou, acc_vec, iou_vec = public_script_scores(hist)
    s = scores(hist, present_only=False)
    assert (s.per_pixel_acc, s.per_class_acc, s.class_iou) == (acc, cls_acc, iou)
    np.testing.assert_array_equal(s.iou_vec, iou_vec)
    # present_only drops exactly the absent classes and so scores higher means
    p = scores(hist, present_only=True)
    assert p.evaluated_classes == tuple(i for i in range(19) if i not in (4, 16))
    assert p.per_class_acc == pytest.approx(np.mean(acc_vec[list(p.evaluated_classes)]))
    assert p.class_iou > s.class_iou
    assert p.per_pixel_acc == pytest.approx(acc, abs=1e-12)


def test_ignore_index_never_counted():
    target = torch.full((4, 6), 255)
    target[0, 0] = 1
    pred = torch.randint(0, 3, (4, 6))
    pred[0, 0] = 2
    hist = confusion_matrix(target, pred, num_classes=3)
    assert hist.sum().item() == 1 and hist[1, 2].item() == 1
    # uint8 labels, as read from PNGs, work the same
    assert torch.equal(confusion_matrix(target.to(torch.uint8), pred, 3), hist)


def test_prediction_out_of_range_raises():
    target = torch.zeros(2, 3, dtype=torch.long)
    pred = torch.zeros(2, 3, dtype=torch.long)
    pred[1, 2] = 19  # the FCN's 20th channel
    with pytest.raises(ValueError, match="pred holds class 19"):
        confusion_matrix(target, pred, num_classes=19)
    pred[1, 2] = -1
    with pytest.raises(ValueError, match="pred holds class -1"):
        confusion_matrix(target, pred, num_classes=19)


def test_prediction_out_of_range_on_ignored_pixel_is_dropped():
    target = torch.tensor([0, 255])
    pred = torch.tensor([0, 19])
    assert confusion_matrix(target, pred, num_classes=19).sum().item() == 1


def test_target_out_of_range_raises():
    with pytest.raises(ValueError, match="target holds class 7"):
        confusion_matrix(torch.tensor([0, 7]), torch.tensor([0, 1]), num_classes=3)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="integer class ids"):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), 3)
    with pytest.raises(ValueError, match="square"):
        scores(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="empty"):
        scores(np.zeros((3, 3)))


def test_batched_equals_sum_of_per_image():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (3, 2, 8, 9), generator=g)
    target[target == 4] = 255
    pred = torch.randint(0, 4, (3, 2, 8, 9), generator=g)
    batched = confusion_matrix(target, pred, num_classes=4)
    per_image = sum(
        confusion_matrix(target[i, j], pred[i, j], num_classes=4)
        for i in range(3)
        for j in range(2)
    )
    assert torch.equal(batched, per_image)
    assert batched.sum().item() == (target != 255).sum().item()


def test_stateful_update_compute_reset():
    metric = ConfusionMatrix(num_classes=3)
    metric.update(TARGET[0], PRED[0])
    metric.update(TARGET[1:], PRED[1:])
    assert metric.hist.tolist() == HAND_HIST
    s = metric.compute()
    assert isinstance(s, Scores)
    assert s.per_pixel_acc == pytest.approx(5 / 8)
    assert metric.compute(present_only=False).class_iou == pytest.approx(
        public_script_scores(np.array(HAND_HIST))[2]
    )
    metric.hist.zero_()  # a copy: the accumulated counts are untouched
    assert metric.hist.sum().item() == 8
    metric.reset()
    assert metric.hist.sum().item() == 0
    metric.update(TARGET, TARGET.clamp(max=2))
    assert metric.compute().per_pixel_acc == 1.0


def test_scores_are_immutable():
    s = scores(np.array(HAND_HIST))
    with pytest.raises(AttributeError):
        s.class_iou = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        s.iou_vec[0] = 1.0
