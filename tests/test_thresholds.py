"""Thresholds picked from the maps without ground truth (misc.thresholds, `--*_thres auto`)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from misc import thresholds


@pytest.mark.parametrize("text, expected", [("auto", "auto"), (" AUTO ", "auto"), ("0.3", 0.3), ("0", 0.0), ("1", 1.0)])
def test_parse_accepts_numbers_and_auto(text, expected):
    assert thresholds.threshold_or_auto(text) == expected


@pytest.mark.parametrize("text", ["1.5", "-0.1", "nan", "otsu", ""])
def test_parse_refuses_the_rest(text):
    with pytest.raises(argparse.ArgumentTypeError, match="a number in \\[0, 1\\] or 'auto'"):
        thresholds.threshold_or_auto(text)


def _bimodal(building_fraction: float, building: float, background: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(4):
        m = np.full((64, 64), background, np.float32)
        m[: int(64 * building_fraction)] = building
        maps.append(np.clip(m + rng.normal(0, 0.02, m.shape).astype(np.float32), 0, 1))
    return maps


def test_operating_point_is_the_mean_and_lies_between_the_modes():
    maps = _bimodal(0.25, building=0.9, background=0.1)
    levels = thresholds.levels_of(maps)
    t = thresholds.operating_point(levels)
    assert t == pytest.approx(float(np.mean(np.stack(maps))), abs=1e-4)
    assert t == pytest.approx(0.25 * 0.9 + 0.75 * 0.1, abs=0.01)
    # the threshold separates the two modes: thresholding recovers the building rows
    truth = np.zeros((64, 64), bool)
    truth[:16] = True
    assert all(np.array_equal(m > t, truth) for m in maps)


def test_confident_levels_put_an_unknown_band_around_the_operating_point():
    levels = thresholds.levels_of(_bimodal(0.25, building=0.9, background=0.1))
    t = levels.mean()
    fg, bg = thresholds.confident_levels(levels)
    assert fg == pytest.approx((t + 0.9) / 2, abs=0.01)
    assert bg == pytest.approx((t + 0.1) / 2, abs=0.01)
    assert bg < t < fg


def test_levels_follow_the_maps_not_a_fixed_number():
    """A map family that sits higher (as an AR map near 0.8) gets a higher threshold."""
    low = thresholds.operating_point(thresholds.levels_of(_bimodal(0.4, 0.6, 0.05)))
    high = thresholds.operating_point(thresholds.levels_of(_bimodal(0.4, 0.95, 0.6)))
    assert high > low + 0.3


def test_mean_between_matches_numpy_and_the_order_of_tiles_does_not_matter():
    rng = np.random.default_rng(3)
    maps = [rng.random((32, 48)).astype(np.float32) ** 2 for _ in range(5)]
    forward, backward = thresholds.levels_of(maps), thresholds.levels_of(maps[::-1])
    values = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    t = forward.mean()
    assert t == pytest.approx(values.mean(), rel=1e-9)
    assert forward.mean_between(t, 1.0) == pytest.approx(values[values >= t].mean(), abs=1e-3)
    assert forward.mean_between(0.0, t) == pytest.approx(values[values < t].mean(), abs=1e-3)
    assert thresholds.confident_levels(forward) == thresholds.confident_levels(backward)
    merged = thresholds.levels_of(maps[:2])
    merged.merge(thresholds.levels_of(maps[2:]))
    assert thresholds.operating_point(merged) == thresholds.operating_point(forward)


def test_no_maps_is_an_error_not_a_nan():
    with pytest.raises(ValueError, match="no map values"):
        thresholds.operating_point(thresholds.MapLevels())


def test_auto_without_positive_maps_is_one_line_naming_the_fix(tmp_path):
    from misc.errors import UserError
    from misc.torchutils import setup_runtime
    from step.kit.common import pick_threshold

    setup_runtime("cpu")
    with pytest.raises(UserError, match="needs the maps of positive tiles.*give the threshold as a number"):
        pick_threshold("auto", "--amn_eval_thres", tmp_path, [], channel=1, map_stage="S7", tag="S9")


# ----------------------------------------------------------------------------- auto_neg: negatives as the background model

@pytest.mark.parametrize("text, expected", [("auto_neg", "auto_neg"), (" AUTO_NEG", "auto_neg"), ("auto", "auto"),
                                            ("0.2", 0.2)])
def test_cut_threshold_parses_auto_neg_too(text, expected):
    assert thresholds.cut_threshold(text) == expected


def test_cut_threshold_refuses_the_rest_and_auto_neg_is_only_for_cuts():
    with pytest.raises(argparse.ArgumentTypeError, match="'auto' or 'auto_neg'"):
        thresholds.cut_threshold("1.2")
    with pytest.raises(argparse.ArgumentTypeError):
        thresholds.threshold_or_auto("auto_neg")


def _mixture(share: float, building, background, n: int = 200_000, seed: int = 0):
    """(positives' values, their truth, negatives' values): the negatives drawn from the background law."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < share
    values = np.where(truth, building(rng, n), background(rng, n))
    return values.astype(np.float32), truth, background(rng, n).astype(np.float32)


def _iou_at(values, truth, t):
    pred = values > t
    return (pred & truth).sum() / (pred | truth).sum()


def test_separated_modes_give_a_cut_between_them_and_the_share():
    values, truth, negatives = _mixture(0.3, lambda r, n: r.uniform(0.6, 1.0, n), lambda r, n: r.uniform(0.0, 0.4, n))
    pos, neg = thresholds.levels_of([values]), thresholds.levels_of([negatives])
    assert thresholds.building_share(pos, neg) == pytest.approx(truth.mean(), abs=0.01)
    t = thresholds.negatives_cut(pos, neg)
    assert 0.39 <= t <= 0.61 and _iou_at(values, truth, t) > 0.99


@pytest.mark.parametrize("share", [0.1, 0.25, 0.5])
def test_overlapping_modes_give_nearly_the_best_cut(share):
    """Beta laws that overlap: the picked cut is within 0.005 IoU of the best cut found with the truth, and
    better than the mean rule of `auto`."""
    values, truth, negatives = _mixture(share, lambda r, n: r.beta(6, 2, n), lambda r, n: r.beta(2, 6, n), seed=1)
    pos, neg = thresholds.levels_of([values]), thresholds.levels_of([negatives])
    assert thresholds.building_share(pos, neg) == pytest.approx(share, abs=0.02)
    t = thresholds.negatives_cut(pos, neg)
    best = max(_iou_at(values, truth, c) for c in np.arange(0.05, 0.95, 0.01))
    assert _iou_at(values, truth, t) >= best - 0.005
    assert _iou_at(values, truth, t) >= _iou_at(values, truth, thresholds.operating_point(pos)) - 1e-9


def test_implied_iou_matches_the_true_iou_curve():
    values, truth, negatives = _mixture(0.2, lambda r, n: r.beta(5, 2, n), lambda r, n: r.beta(1.5, 5, n), seed=2)
    cuts, iou = thresholds.implied_iou(thresholds.levels_of([values]), thresholds.levels_of([negatives]))
    for i in (200, 400, 600):
        assert iou[i] == pytest.approx(_iou_at(values, truth, cuts[i] - 1e-9), abs=0.02)


def test_nothing_to_separate_falls_back_to_the_mean():
    rng = np.random.default_rng(4)
    same = rng.beta(2, 5, 50_000).astype(np.float32)
    pos, neg = thresholds.levels_of([same]), thresholds.levels_of([rng.beta(2, 5, 50_000).astype(np.float32)])
    assert thresholds.building_share(pos, neg) < 0.04  # sampling noise only
    lifted = thresholds.levels_of([np.clip(same - 0.2, 0, 1)])  # positives lower than the negatives: pi = 0
    assert thresholds.building_share(lifted, neg) == 0.0
    assert thresholds.negatives_cut(lifted, neg) == thresholds.operating_point(lifted)
