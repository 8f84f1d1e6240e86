"""Operating points of building maps picked without ground truth (`--*_thres auto`).

The reference fixes its thresholds (0.08 to score a CAM, 0.25 / 0.15 for the confident labels, 0.67 for the
AR maps) for RepVGG-B1g2 maps. Maps of another backbone sit at other levels: an ImageNet-pretrained
EfficientNet-Lite BAC map stays above 0.08 on most background pixels, and its AR map peaks near 0.8. Every map
here is normalised per tile to a maximum of 1, so one statistic of its values over the positive tiles places
the operating point of that map:

- seed CAMs and BAC maps (S2e, S4): the operating point t is the mean map value over the positives' pixels.
  A map of a building fraction p whose building pixels sit near h and background near l has mean
  p*h + (1-p)*l: t lies between the two modes, nearer the background the fewer buildings there are.
- confident labels: an "unknown" band centred on t. Building above the point halfway from t to the centre of
  the values above t (the building mode), background below the point halfway from t to the centre of the
  values below it (`confident_levels`). On the fAIr positives' BAC maps of EfficientNet-Lite0 this labels
  75% of the pixels with 76% / 89% of the building / background labels right, where the fixed 0.25 / 0.15
  labelled 87% with 59% / 93% right and two thirds of all pixels building (docs/ARCHITECTURE.md,
  "Thresholds").
- the AR maps (S8, S9): the cut at which `map > t` best reproduces the confident labels the AR network was
  trained on (S5's building / background pixels; the unknown band left out), by IoU (`labels_cut`). The labels
  carry the building share of the tiles, so the cut does not drift with it as the mean does: on the fAIr
  positives the mean cut the AR maps too low where positives are mostly background (1% image-label rule) and
  too high where they are mostly building (in-area split); this cut raised the pseudo masks on every area of
  both (docs/ARCHITECTURE.md, "Thresholds").

No ground truth is read. The values come from one pass over the maps (a histogram of 1,000 bins on [0, 1] plus
the exact sum; for `labels_cut` one histogram per label), so the numbers are the same however the tiles are
ordered or sharded.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

AUTO = "auto"
BINS = 1000


def _bins(values: np.ndarray) -> np.ndarray:
    """The histogram bin of each value in [0, 1] (values outside go to the end bins)."""
    return np.clip((values * BINS).astype(np.int64), 0, BINS - 1)


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


@dataclass
class MapLevels:
    """Running statistics of map values in [0, 1] (values outside are clipped into the end bins)."""
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    total: float = 0.0

    def add(self, building_map: np.ndarray) -> None:
        values = np.asarray(building_map, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        self.histogram += np.bincount(_bins(values), minlength=BINS)
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


@dataclass
class LabelledLevels:
    """Histograms of map values in [0, 1] on the pixels a label image calls building (1) and background (0);
    'unknown' (255) pixels are left out."""
    building: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    background: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))

    def add(self, building_map: np.ndarray, label: np.ndarray) -> None:
        values = np.asarray(building_map, dtype=np.float64)
        finite = np.isfinite(values)
        self.building += np.bincount(_bins(values[finite & (label == 1)]), minlength=BINS)
        self.background += np.bincount(_bins(values[finite & (label == 0)]), minlength=BINS)


def labels_cut(levels: LabelledLevels) -> float | None:
    """The cut t = i / BINS at which `map > t` has the best IoU with the labels' building pixels (true
    positives: building values at or above t; false positives: background values at or above t; the middle
    one where several tie), or None where the labels hold no building or no background pixel (nothing to
    reproduce)."""
    if not levels.building.sum() or not levels.background.sum():
        return None
    # at cut i: TP = building values in bins >= i, FP = background values in bins >= i, FN = the rest of building
    true_pos = np.cumsum(levels.building[::-1])[::-1]
    false_pos = np.cumsum(levels.background[::-1])[::-1]
    iou = true_pos / (levels.building.sum() + false_pos)
    # cuts inside the unknown band that hold no labelled value tie; their middle keeps clear of both labels
    tied = np.flatnonzero(iou >= iou.max() - 1e-12)
    return round(int(np.median(tied)) / BINS, 4)
