"""Dense CRF and confident labels (SPEC S5): the pure maths of `step.cam_to_ir_label`.

`confident_label` turns a building map into a {0, 1, 255} label: building where the CRF of the
strict mask says building, background where even the CRF of the loose mask says background, and
ignore (255) in between. `label_quality` counts how much of a label is confident and how much of it
agrees with the ground truth, as integers that add up over tiles.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_labels

IGNORE = 255

# The reference's CRF (SPEC section 6, CRF row); BAC-AR-Net's bilateral term differs from IRN's 50/10.
CRF_PARAMS = {"t": 10, "gt_prob": 0.7, "gauss_sxy": 3, "gauss_compat": 3,
              "bi_sxy": 60, "bi_srgb": 5, "bi_compat": 5}


def crf_inference_label(img: np.ndarray, labels: np.ndarray, n_labels: int = 2, t: int = 10,
                        gt_prob: float = 0.7, gauss_sxy: float = 3, gauss_compat: float = 3,
                        bi_sxy: float = 60, bi_srgb: float = 5, bi_compat: float = 5) -> np.ndarray:
    """Dense-CRF refinement of a hard label map (reference `imutils.crf_inference_label`).

    Args:
        img: uint8 HxWx3 RGB image, not normalised.
        labels: HxW integer map with values in [0, n_labels).
        t: mean-field iterations.
        gt_prob: unary confidence in the given label (the others share 1 - gt_prob).

    Returns:
        uint8 HxW: the argmax of the CRF marginals.
    """
    height, width = labels.shape
    if img.shape[:2] != (height, width) or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image {img.shape} does not match labels {labels.shape} (expected HxWx3)")
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(unary_from_labels(labels.astype(np.int64), n_labels, gt_prob=gt_prob, zero_unsure=False))
    crf.addPairwiseGaussian(sxy=gauss_sxy, compat=gauss_compat)
    # a writable C-contiguous copy: pydensecrf rejects read-only buffers (e.g. np.asarray of a PIL image)
    crf.addPairwiseBilateral(sxy=bi_sxy, srgb=bi_srgb, rgbim=np.array(img, dtype=np.uint8, order="C"),
                             compat=bi_compat)
    q = np.asarray(crf.inference(t), dtype=np.float32).reshape(n_labels, height, width)
    return np.argmax(q, axis=0).astype(np.uint8)


def confident_label(img: np.ndarray, building_map: np.ndarray, fg_thres: float, bg_thres: float) -> np.ndarray:
    """SPEC S5: fg = CRF(1[m > t_fg]), bg = CRF(1[m > t_bg]); 1 where fg = 1, 255 where fg = 0,
    then 0 where fg + bg = 0. A pixel equal to a threshold counts as below it (the reference pads a
    constant background plane and takes argmax, so ties go to background).

    Returns:
        uint8 HxW with values in {0, 1, 255}.
    """
    fg = crf_inference_label(img, (building_map > fg_thres).astype(np.uint8))
    bg = crf_inference_label(img, (building_map > bg_thres).astype(np.uint8))
    label = np.where(fg == 1, 1, IGNORE).astype(np.uint8)
    label[(fg == 0) & (bg == 0)] = 0
    return label


def label_quality(label: np.ndarray, gt: np.ndarray | None = None) -> dict[str, int]:
    """Pixel counts of one confident label; sum them over tiles (e.g. with `collections.Counter`).

    Keys: `pixels`, `building` and `background` (confident pixels of each class) and, when the
    {0, 1} ground truth `gt` is given, `building_correct` and `background_correct`.
    """
    building, background = label == 1, label == 0
    counts = {"pixels": int(label.size), "building": int(building.sum()), "background": int(background.sum())}
    if gt is not None:
        if gt.shape != label.shape:
            raise ValueError(f"label {label.shape} and ground truth {gt.shape} differ in size")
        counts["building_correct"] = int((building & (gt == 1)).sum())
        counts["background_correct"] = int((background & (gt == 0)).sum())
    return counts


def quality_scores(counts: Mapping[str, int]) -> dict[str, float | None]:
    """Coverage (confident fraction), class fractions and, with ground-truth counts, the precision of
    confident building and background pixels. A ratio with nothing to count is None."""
    def ratio(num: int, den: int) -> float | None:
        return num / den if den else None

    out = {"coverage": ratio(counts["building"] + counts["background"], counts["pixels"]),
           "building_fraction": ratio(counts["building"], counts["pixels"]),
           "background_fraction": ratio(counts["background"], counts["pixels"])}
    if "building_correct" in counts:
        out["building_precision"] = ratio(counts["building_correct"], counts["building"])
        out["background_precision"] = ratio(counts["background_correct"], counts["background"])
    return out
