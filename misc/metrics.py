"""The one segmentation metric: a dataset-level confusion matrix (SPEC S4, decision 8).

The confusion N[g, p] counts pixels with ground truth g and prediction p over all pixels of all
listed tiles; scores are computed once from the total, never averaged per image.
Class 0 = background, 1 = building; ground-truth pixels valued 255 are ignored.
"""
from __future__ import annotations

import numpy as np

from misc.imutils import IGNORE


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """Confusion matrix [num_classes, num_classes] (rows: ground truth) of one pair of label maps."""
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in size")
    valid = gt != IGNORE
    index = gt[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores(conf: np.ndarray) -> dict[str, float]:
    """Building IoU, background IoU, mIoU, building precision/recall/F1 and overall accuracy.

    A ratio whose denominator is zero is reported as 0.0 (nothing predicted and nothing true).
    """
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    gt_total = conf.sum(axis=1)
    pred_total = conf.sum(axis=0)
    iou = _ratio(tp, gt_total + pred_total - tp)
    precision = _ratio(tp[1], pred_total[1])
    recall = _ratio(tp[1], gt_total[1])
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {
        "building_iou": float(iou[1]),
        "background_iou": float(iou[0]),
        "miou": float(iou.mean()),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "overall_accuracy": float(_ratio(tp.sum(), conf.sum())),
    }


def _ratio(num, den):
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


class ConfusionMeter:
    """Accumulates `confusion` over tiles."""

    def __init__(self, num_classes: int = 2) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        self.matrix += confusion(gt, pred, self.num_classes)

    def scores(self) -> dict[str, float]:
        return scores(self.matrix)


def threshold_building(building_map: np.ndarray, threshold: float) -> np.ndarray:
    """SPEC 2.0 thresholded prediction: building iff map > t (a tie goes to background)."""
    return (building_map > threshold).astype(np.uint8)


def format_scores(s: dict[str, float]) -> str:
    return (f"building IoU {s['building_iou']:.4f}  F1 {s['f1']:.4f}  precision {s['precision']:.4f}  "
            f"recall {s['recall']:.4f}  bg IoU {s['background_iou']:.4f}  mIoU {s['miou']:.4f}  "
            f"OA {s['overall_accuracy']:.4f}")
