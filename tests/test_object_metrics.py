"""misc.metrics building-level scores (SpaceNet protocol) on hand-made masks with known tp/fp/fn."""
from __future__ import annotations

import time

import numpy as np
import pytest

from misc.metrics import match_buildings, object_scores


def _masks(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((size, size), np.uint8), np.zeros((size, size), np.uint8)


def test_exact_match_and_ignore_value():
    pred, gt = _masks()
    gt[5:25, 5:25] = 1
    gt[40:50, 40:50] = 255  # ignore is not a building
    pred[5:25, 5:25] = 1
    assert match_buildings(pred, gt) == (1, 0, 0)


def test_split_building_is_two_false_positives_and_a_miss():
    pred, gt = _masks()
    gt[10:30, 10:30] = 1
    pred[10:30, 10:19] = 1   # two halves of 180 px, IoU 0.45 each
    pred[10:30, 21:30] = 1
    assert match_buildings(pred, gt) == (0, 2, 1)


def test_merged_pair_is_one_false_positive_and_two_misses():
    pred, gt = _masks()
    gt[10:30, 10:20] = 1
    gt[10:30, 21:31] = 1     # two roofs a pixel apart
    pred[10:30, 10:31] = 1   # one blob over both: IoU 200/420 with each
    assert match_buildings(pred, gt) == (0, 1, 2)


@pytest.mark.parametrize("shift, expected", [(5, (1, 0, 0)), (8, (0, 1, 1))])
def test_shifted_building_under_and_over_half(shift, expected):
    pred, gt = _masks()
    gt[10:30, 10:30] = 1
    pred[10:30, 10 + shift:30 + shift] = 1   # IoU 300/500 = 0.6 at 5 px, 240/560 = 0.43 at 8 px
    assert match_buildings(pred, gt) == expected


def test_iou_of_exactly_the_threshold_matches():
    pred, gt = _masks()
    gt[10:30, 10:30] = 1
    pred[10:30, 10:20] = 1   # 200/400
    assert match_buildings(pred, gt) == (1, 0, 0)


def test_components_are_8_connected():
    pred, gt = _masks()
    gt[10:20, 10:20] = 1
    gt[20:30, 20:30] = 1     # touches the first at one corner: one building under 8-connectivity
    pred[10:30, 10:30] = 1   # IoU 200/400
    assert match_buildings(pred, gt) == (1, 0, 0)


def test_greedy_matching_is_one_to_one_by_descending_iou():
    pred, gt = _masks()
    gt[0:40, 0:20] = 1       # A
    gt[0:30, 22:40] = 1      # B
    pred[0:30, 0:24] = 1     # P1: IoU 600/920 = 0.65 with A, 60/1200 = 0.05 with B
    pred[32:40, 0:20] = 1    # P2: IoU 160/800 = 0.2 with A
    # P1-A goes first, so P2 (only A) and B (only P1) stay unmatched; a maximum matching would pair P1-B, P2-A
    assert match_buildings(pred, gt, iou_threshold=0.04) == (1, 1, 1)
    assert match_buildings(pred, gt) == (1, 1, 1)


def test_empty_prediction_and_empty_truth():
    pred, gt = _masks()
    gt[5:15, 5:15] = 1
    gt[30:40, 30:40] = 1
    assert match_buildings(pred, gt) == (0, 0, 2)
    assert match_buildings(gt, pred) == (0, 2, 0)
    assert match_buildings(pred, pred) == (0, 0, 0)
    with pytest.raises(ValueError, match="differ in size"):
        match_buildings(pred, gt[:10])


def test_object_scores_and_the_empty_cases():
    assert object_scores(3, 1, 2) == pytest.approx(
        {"object_precision": 0.75, "object_recall": 0.6, "object_f1": 6 / 9})
    assert object_scores(0, 0, 2) == {"object_precision": 1.0, "object_recall": 0.0, "object_f1": 0.0}
    assert object_scores(0, 2, 0) == {"object_precision": 0.0, "object_recall": 1.0, "object_f1": 0.0}
    assert object_scores(0, 0, 0) == {"object_precision": 1.0, "object_recall": 1.0, "object_f1": 1.0}


def test_large_masks_with_many_buildings_are_fast():
    gt = np.zeros((2048, 2048), np.uint8)
    gt.reshape(256, 8, 256, 8)[:, 1:6, :, 1:6] = 1        # 65536 roofs of 5x5 on an 8-pixel grid
    pred = np.roll(gt, 1, axis=1)                         # every roof one pixel off: IoU 20/30
    blocks = pred.reshape(256, 8, 256, 8)
    blocks[:, :, ::4, :] = 0                              # a quarter of them missed ...
    blocks[::2, 7, :, 7] = 1                              # ... and 32768 one-pixel false alarms in the gaps
    start = time.perf_counter()
    counts = match_buildings(pred, gt)
    assert time.perf_counter() - start < 5.0              # about 0.5 s on one core
    assert counts == (49152, 32768, 16384)
