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


# ----------------------------------------------------------------------------- the AR cut from the confident labels

def _labelled(share: float, n: int = 200_000, seed: int = 0):
    """(map values, ground truth, confident labels {0, 1, 255}): overlapping beta laws; the labels are the
    truth with 30% of the pixels unknown (255) at random."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < share
    values = np.where(truth, rng.beta(6, 2, n), rng.beta(2, 6, n)).astype(np.float32)
    labels = np.where(rng.random(n) < 0.3, 255, truth).astype(np.uint8)
    return values, truth, labels


def _iou_at(values, truth, t):
    pred = values > t
    return (pred & truth).sum() / (pred | truth).sum()


@pytest.mark.parametrize("share", [0.1, 0.26, 0.44, 0.7])
def test_labels_cut_is_the_best_cut_for_the_labels_and_follows_the_share(share):
    """The cut reproduces the labels better than any other (brute force over the bins), and on maps whose
    labels are right it is within 0.01 IoU of the best cut with the truth, at building shares where the mean
    of `operating_point` drifts away from it (lower with few buildings, higher with many)."""
    values, truth, labels = _labelled(share)
    levels = thresholds.LabelledLevels()
    levels.add(values, labels)
    t = thresholds.labels_cut(levels)
    known = labels != 255
    agreement = [_iou_at(values[known], labels[known] == 1, c) for c in np.arange(0.0, 1.0, 0.01)]
    assert _iou_at(values[known], labels[known] == 1, t) >= max(agreement) - 1e-9
    best = max(_iou_at(values, truth, c) for c in np.arange(0.05, 0.95, 0.01))
    assert _iou_at(values, truth, t) >= best - 0.01
    mean_cut = thresholds.operating_point(thresholds.levels_of([values]))
    assert _iou_at(values, truth, t) >= _iou_at(values, truth, mean_cut) - 1e-9


def test_labels_cut_ignores_unknown_and_needs_both_labels():
    levels = thresholds.LabelledLevels()
    levels.add(np.array([0.9, 0.8, 0.1, 0.5]), np.array([1, 1, 0, 255]))
    assert levels.building.sum() == 2 and levels.background.sum() == 1
    assert 0.1 <= thresholds.labels_cut(levels) < 0.8
    only_building = thresholds.LabelledLevels()
    only_building.add(np.array([0.9, 0.2]), np.array([1, 255]))
    assert thresholds.labels_cut(only_building) is None


def test_labels_cut_merges_like_one_pass():
    values, _, labels = _labelled(0.3, n=40_000, seed=5)
    whole, parts = thresholds.LabelledLevels(), thresholds.LabelledLevels()
    whole.add(values, labels)
    for chunk in range(4):
        parts.add(values[chunk::4], labels[chunk::4])
    assert thresholds.labels_cut(whole) == thresholds.labels_cut(parts)


def test_the_ar_cut_without_its_labels_is_one_line_and_one_class_labels_fall_back_to_the_mean(tmp_path, caplog):
    import logging

    from misc import fileio
    from misc.errors import UserError
    from misc.torchutils import setup_runtime
    from step.kit.common import pick_threshold

    setup_runtime("cpu")
    building = np.zeros((2, 8, 8), np.float32)
    building[1, :4] = 0.9
    building[1, 4:] = 0.2
    fileio.save_npy_dict(tmp_path / "maps" / "a.npy", {"keys": np.zeros(1, np.int64), "high_res": building})
    with pytest.raises(UserError, match="labels.*a.png is missing: run --cam_to_ir_label_pass True"):
        pick_threshold("auto", "--amn_eval_thres", tmp_path / "maps", ["a"], channel=1, map_stage="S7", tag="S9",
                       labels_dir=tmp_path / "labels")
    fileio.save_png(tmp_path / "labels" / "a.png", np.full((8, 8), 255, np.uint8))
    with caplog.at_level(logging.WARNING):
        t = pick_threshold("auto", "--amn_eval_thres", tmp_path / "maps", ["a"], channel=1, map_stage="S7",
                           tag="S9", labels_dir=tmp_path / "labels")
    assert t == pytest.approx(0.55, abs=1e-3) and "falls back to the mean" in caplog.text
    label = np.zeros((8, 8), np.uint8)
    label[:4] = 1
    fileio.save_png(tmp_path / "labels" / "a.png", label)
    t = pick_threshold("auto", "--amn_eval_thres", tmp_path / "maps", ["a"], channel=1, map_stage="S7", tag="S9",
                       labels_dir=tmp_path / "labels")
    assert 0.2 <= t < 0.9
    fileio.save_png(tmp_path / "labels" / "a.png", np.full((8, 8), 7, np.uint8))
    with pytest.raises(UserError, match="a.png holds the values"):
        pick_threshold("auto", "--amn_eval_thres", tmp_path / "maps", ["a"], channel=1, map_stage="S7", tag="S9",
                       labels_dir=tmp_path / "labels")
    fileio.save_png(tmp_path / "labels" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match="is 4x4 but the map .* is 8x8"):
        pick_threshold("auto", "--amn_eval_thres", tmp_path / "maps", ["a"], channel=1, map_stage="S7", tag="S9",
                       labels_dir=tmp_path / "labels")
