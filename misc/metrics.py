"""The one segmentation metric: a dataset-level confusion matrix.

The confusion N[g, p] counts pixels with ground truth g and prediction p over all pixels of all
listed tiles; scores are computed once from the total, never averaged per image.
Class 0 = background, 1 = building; ground-truth pixels valued 255 are ignored.
Building-level scores (the SpaceNet protocol: matched connected components) are at the end:
`match_buildings` counts tp/fp/fn for one pair of masks, `object_scores` turns summed counts into scores.
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
    """Building iff map > t; a tie goes to background (the reference's argmax over a padded plane t)."""
    return (building_map > threshold).astype(np.uint8)


def format_scores(s: dict[str, float]) -> str:
    return (f"building IoU {s['building_iou']:.4f}  F1 {s['f1']:.4f}  precision {s['precision']:.4f}  "
            f"recall {s['recall']:.4f}  bg IoU {s['background_iou']:.4f}  mIoU {s['miou']:.4f}  "
            f"OA {s['overall_accuracy']:.4f}")


# ----------------------------------------------------------------------------- building-level scores

def match_buildings(pred_mask: np.ndarray, gt_mask: np.ndarray, iou_threshold: float = 0.5) -> tuple[int, int, int]:
    """(tp, fp, fn) of buildings under the SpaceNet protocol.

    Buildings are the 8-connected components of mask == 1 in prediction and truth (255 = ignore is not
    building). A predicted and a true building match when their IoU >= `iou_threshold`; pairs are taken
    greedily by descending IoU, each building at most once. Unmatched predictions are false positives,
    unmatched truths false negatives. At the default 0.5 a building has at most one partner above it
    anyway, so greedy order only matters for lower thresholds.
    """
    if pred_mask.shape != gt_mask.shape:
        raise ValueError(f"prediction {pred_mask.shape} and ground truth {gt_mask.shape} differ in size")
    pred, n_pred = _components(pred_mask)
    gt, n_gt = _components(gt_mask)
    if n_pred == 0 or n_gt == 0:
        return 0, n_pred, n_gt
    pred_area = np.bincount(pred.ravel(), minlength=n_pred + 1)
    gt_area = np.bincount(gt.ravel(), minlength=n_gt + 1)
    # intersections of every overlapping pair at once: one key per (pred, gt) label pair. np.unique rather
    # than a dense bincount, whose (n_pred + 1) * (n_gt + 1) bins could outgrow memory on noisy masks.
    both = (pred > 0) & (gt > 0)
    keys, inter = np.unique(pred[both].astype(np.int64) * (n_gt + 1) + gt[both], return_counts=True)
    p, g = keys // (n_gt + 1), keys % (n_gt + 1)
    iou = inter / (pred_area[p] + gt_area[g] - inter)
    candidates = np.flatnonzero(iou >= iou_threshold)
    candidates = candidates[np.argsort(-iou[candidates], kind="stable")]
    used_pred, used_gt = set(), set()
    for k in candidates:  # loops over candidate pairs only (at most one per building at 0.5), never pixels
        if p[k] not in used_pred and g[k] not in used_gt:
            used_pred.add(p[k])
            used_gt.add(g[k])
    tp = len(used_pred)
    return tp, n_pred - tp, n_gt - tp


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """int32 labels (0 = background) of the 8-connected components of mask == 1, and their count."""
    from scipy import ndimage

    labels, count = ndimage.label(np.asarray(mask) == 1, structure=np.ones((3, 3), dtype=bool))
    return labels, int(count)


def object_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Building-level precision, recall and F1 from summed counts.

    The empty cases are vacuous truths rather than the 0.0 of `scores`: with nothing predicted
    (tp + fp == 0) precision is 1.0, with nothing to find (tp + fn == 0) recall is 1.0, and F1 =
    2tp / (2tp + fp + fn) is 1.0 only when there is nothing at all. So F1 is 0.0 whenever there is a
    miss or a false alarm and no hit, and an empty tile predicted empty scores 1.0, not 0.0.
    """
    return {
        "object_precision": tp / (tp + fp) if tp + fp else 1.0,
        "object_recall": tp / (tp + fn) if tp + fn else 1.0,
        "object_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
    }
