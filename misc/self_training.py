"""Self-training of the map model (S11 rounds): a model's building probabilities -> the next round's labels.

Round k + 1 learns from round k's predictions on the training tiles. Where the model is unsure its
prediction is no label: pixels whose building probability lies inside the band [lo, hi] become 255 (ignored
by the loss), building above hi, background below lo (`band_labels`). With the dense CRF (`round_label`,
crf=True) the cut follows the image's edges, as S5's confident labels do: building where the CRF of
p > hi says building, background where even the CRF of p > lo says background, no label in between
(`misc.crf.confident_label`). Negative tiles (image label 0) are all background whatever the model says.

Pure functions of arrays; reads and writes nothing (the stage, step/train_seg.py, does).
"""
from __future__ import annotations

import argparse

import numpy as np

from misc.imutils import IGNORE


def probability_band(value: str) -> tuple[float, float]:
    """argparse type of --seg_self_train_band: "lo,hi" with 0 <= lo <= hi <= 1."""
    try:
        lo, hi = (float(v) for v in str(value).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two probabilities lo,hi (e.g. 0.3,0.7), got {value!r}") from None
    if not 0 <= lo <= hi <= 1:
        raise argparse.ArgumentTypeError(f"expected 0 <= lo <= hi <= 1, got {value!r}")
    return lo, hi


def band_labels(prob: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint8 HxW labels of a building probability map: 1 where p > hi, 0 where p < lo, 255 (no label) in
    [lo, hi]. With lo == hi only pixels exactly at it are left unlabelled."""
    prob = np.asarray(prob)
    label = np.full(prob.shape, IGNORE, dtype=np.uint8)
    label[prob > hi] = 1
    label[prob < lo] = 0
    return label


def round_label(image: np.ndarray | None, prob: np.ndarray, band: tuple[float, float], crf: bool = False,
                negative: bool = False) -> np.ndarray:
    """The next round's label of one tile: all 0 for a negative, else `band_labels`, or with `crf` the dense
    CRF's confident label of the probability at (hi, lo) (`image`: uint8 HxWx3, needed then)."""
    if negative:
        return np.zeros(np.asarray(prob).shape, dtype=np.uint8)
    lo, hi = band
    if crf:
        from misc.crf import confident_label

        if image is None:
            raise ValueError("round_label with crf=True needs the image")
        return confident_label(image, np.asarray(prob, dtype=np.float32), hi, lo)
    return band_labels(prob, lo, hi)


def label_fractions(label: np.ndarray) -> tuple[int, int, int]:
    """(background, building, no-label) pixel counts of a label, to sum over tiles for the summary line."""
    counts = np.bincount(np.asarray(label).reshape(-1), minlength=256)
    return int(counts[0]), int(counts[1]), int(counts[IGNORE])
