"""Operating points of building maps picked without ground truth (`--*_thres auto`).

The reference fixes its thresholds (0.08 to score a CAM, 0.25 / 0.15 for the confident labels, 0.67 for the
AR maps) for RepVGG-B1g2 maps. Maps of another backbone sit at other levels: an ImageNet-pretrained
EfficientNet-Lite BAC map stays above 0.08 on most background pixels, and its AR map peaks near 0.8. Every map
here is normalised per tile to a maximum of 1, so one statistic of its values over the positive tiles places
the operating point of that map:

- the operating point t is the mean map value over the positives' pixels. A map of a building fraction p
  whose building pixels sit near h and background near l has mean p*h + (1-p)*l: t lies between the two modes,
  nearer the background the fewer buildings there are, as a threshold should.
- confident labels: an "unknown" band centred on t. Building above the point halfway from t to the centre of
  the values above t (the building mode), background below the point halfway from t to the centre of the
  values below it (`confident_levels`). On the fAIr positives' BAC maps of EfficientNet-Lite0 this labels
  75% of the pixels with 76% / 89% of the building / background labels right, where the fixed 0.25 / 0.15
  labelled 87% with 59% / 93% right and two thirds of all pixels building (docs/ARCHITECTURE.md,
  "Thresholds").

- `auto_neg` (cuts only, `negatives_cut`): the negative tiles hold no building, so their maps are a model of
  what background scores look like. Taking the positives' values as a mixture F_pos = (1 - pi) F_neg +
  pi F_bld, the building share pi is the largest one the low values allow (`building_share`), and the cut is
  the t that maximises the building IoU this mixture implies. It reads the negatives' maps as well.

No ground truth is read. The values come from one pass over the maps (a histogram of 1,000 bins on [0, 1] plus
the exact sum), so the numbers are the same however the tiles are ordered or sharded.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

AUTO = "auto"
AUTO_NEG = "auto_neg"
BINS = 1000
# building_share looks at cuts holding at least this share of the negatives' values below them, where the
# ratio of the two distributions is not noise of a few pixels
NEG_MIN_MASS = 0.1


def threshold_or_auto(value: str) -> float | str:
    """argparse type: a number in [0, 1], or 'auto' (picked from the maps, without ground truth)."""
    if str(value).strip().lower() == AUTO:
        return AUTO
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'auto', got {value!r}")
    return number


def cut_threshold(value: str) -> float | str:
    """argparse type of the flags that cut a map (`--cam_eval_thres`): a number in [0, 1], 'auto', or
    'auto_neg' (picked with the negatives' maps as the model of background, `negatives_cut`)."""
    if str(value).strip().lower() == AUTO_NEG:
        return AUTO_NEG
    try:
        return threshold_or_auto(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], 'auto' or 'auto_neg', got {value!r}") from None


@dataclass
class MapLevels:
    """Running statistics of map values in [0, 1] (values outside are clipped into the end bins)."""
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    total: float = 0.0

    def add(self, building_map: np.ndarray) -> None:
        values = np.asarray(building_map, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        index = np.clip((values * BINS).astype(np.int64), 0, BINS - 1)
        self.histogram += np.bincount(index, minlength=BINS)
        self.total += float(values.sum())

    def merge(self, other: MapLevels) -> None:
        self.histogram += other.histogram
        self.total += other.total

    @property
    def count(self) -> int:
        return int(self.histogram.sum())

    def mean(self) -> float:
        if not self.count:
            raise ValueError("no map values to pick a threshold from")
        return self.total / self.count

    def mean_between(self, low: float, high: float) -> float:
        """Mean of the values in [low, high] from the bin centres (within half a bin, 5e-4)."""
        centres = (np.arange(BINS) + 0.5) / BINS
        inside = (centres >= low) & (centres <= high)
        weight = self.histogram[inside].sum()
        return float((self.histogram[inside] * centres[inside]).sum() / weight) if weight else (low + high) / 2


def levels_of(maps: Iterable[np.ndarray]) -> MapLevels:
    levels = MapLevels()
    for building_map in maps:
        levels.add(building_map)
    return levels


def operating_point(levels: MapLevels) -> float:
    """The threshold that scores a map or makes its masks: the mean map value of the positives."""
    return round(levels.mean(), 4)


def confident_levels(levels: MapLevels) -> tuple[float, float]:
    """(fg, bg) thresholds of the confident labels: halfway from the operating point t to the centre of the
    values above it (building), and to the centre of the values below it (background); between the two the
    label stays 'unknown'."""
    t = levels.mean()
    building_centre = levels.mean_between(t, 1.0)
    background_centre = levels.mean_between(0.0, t)
    return round((t + building_centre) / 2, 4), round((t + background_centre) / 2, 4)


def building_share(positives: MapLevels, negatives: MapLevels) -> float:
    """pi, the share of building among the positives' values, from F_pos = (1 - pi) F_neg + pi F_bld.

    Building values lie high, so below a low cut t the positives hold background only and F_pos(t) =
    (1 - pi) F_neg(t); above it building only adds. 1 - pi is therefore the smallest F_pos(t) / F_neg(t)
    over the cuts (the largest background share the data allow), taken where F_neg(t) >= NEG_MIN_MASS.
    """
    if not positives.count or not negatives.count:
        raise ValueError("building_share needs map values of positives and negatives")
    f_pos = np.cumsum(positives.histogram) / positives.count
    f_neg = np.cumsum(negatives.histogram) / negatives.count
    usable = f_neg >= NEG_MIN_MASS
    background = float(np.min(f_pos[usable] / f_neg[usable]))
    return float(np.clip(1.0 - background, 0.0, 1.0))


def implied_iou(positives: MapLevels, negatives: MapLevels) -> tuple[np.ndarray, np.ndarray]:
    """(cuts t_i = i / BINS, the building IoU of `map >= t_i` that the mixture implies at each).

    With S(t) the share of values at or above t and pi = `building_share`: true positives pi S_bld(t) =
    S_pos(t) - (1 - pi) S_neg(t), false positives (1 - pi) S_neg(t), false negatives pi - TP, so
    IoU(t) = TP / (pi + (1 - pi) S_neg(t)).
    """
    pi = building_share(positives, negatives)
    # S(t_i): the share of values in bins i and above
    s_pos = np.cumsum(positives.histogram[::-1])[::-1] / positives.count
    s_neg = np.cumsum(negatives.histogram[::-1])[::-1] / negatives.count
    true_pos = np.clip(s_pos - (1 - pi) * s_neg, 0.0, None)
    iou = np.divide(true_pos, pi + (1 - pi) * s_neg, out=np.zeros(BINS), where=(pi + (1 - pi) * s_neg) > 0)
    return np.arange(BINS) / BINS, iou


def negatives_cut(positives: MapLevels, negatives: MapLevels) -> float:
    """The `auto_neg` threshold: the cut with the best implied building IoU (`implied_iou`). Where the
    positives' values are no richer in high values than the negatives' (pi = 0: nothing to separate) it
    falls back to `operating_point`."""
    cuts, iou = implied_iou(positives, negatives)
    if not iou.max() > 0:
        return operating_point(positives)
    return round(float(cuts[int(np.argmax(iou))]), 4)

