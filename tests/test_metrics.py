"""The metric against a confusion computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from misc import metrics


def test_confusion_and_scores_by_hand():
    gt = np.array([[0, 0, 1, 1],
                   [0, 1, 1, 255]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 0],
                     [0, 1, 0, 1]], dtype=np.uint8)
    # gt 0 -> pred 0: 2, pred 1: 1;  gt 1 -> pred 0: 2, pred 1: 2;  the 255 pixel is ignored
    conf = metrics.confusion(gt, pred)
    assert conf.tolist() == [[2, 1], [2, 2]]
    s = metrics.scores(conf)
    assert s["building_iou"] == pytest.approx(2 / (2 + 1 + 2))
    assert s["background_iou"] == pytest.approx(2 / (2 + 2 + 1))
    assert s["miou"] == pytest.approx((0.4 + 0.4) / 2)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 4)
    assert s["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert s["overall_accuracy"] == pytest.approx(4 / 7)


def test_meter_is_dataset_level_not_per_image_mean():
    meter = metrics.ConfusionMeter()
    meter.add(np.ones((2, 2), np.uint8), np.ones((2, 2), np.uint8))           # IoU 1 on a 4-pixel tile
    meter.add(np.ones((4, 4), np.uint8), np.zeros((4, 4), np.uint8))          # IoU 0 on a 16-pixel tile
    assert meter.scores()["building_iou"] == pytest.approx(4 / 20)           # not (1 + 0) / 2


def test_empty_classes_give_zero_not_nan():
    s = metrics.scores(metrics.confusion(np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8)))
    assert s["building_iou"] == 0.0 and s["f1"] == 0.0 and s["background_iou"] == 1.0


def test_threshold_tie_goes_to_background():
    assert metrics.threshold_building(np.array([0.2, 0.25, 0.3]), 0.25).tolist() == [0, 0, 1]


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in size"):
        metrics.confusion(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))


def test_stage_table_gives_the_pseudo_to_ground_truth_ratio(tmp_path):
    from misc import fileio
    from step.report import pseudo_to_gt_ratio, stage_table

    def write(name: str, variant: str, iou: float) -> None:
        scores = {"building_iou": iou, "f1": 0.5, "precision": 0.5, "recall": 0.5}
        fileio.save_json(tmp_path / f"metrics_{name}.json", {"stage": name, "stage_flag": "make_seg",
                                                             "variant": variant, "tiles": 3, "threshold": "argmax",
                                                             "scores": scores})

    write("zz_weak", "pseudo masks", 0.6)  # file names do not matter: the stage and variant do
    assert pseudo_to_gt_ratio(tmp_path) is None
    write("aa_full", "ground truth", 0.75)
    assert pseudo_to_gt_ratio(tmp_path) == pytest.approx(0.8)
    table = stage_table(tmp_path)
    assert table.index("| DeepLabV3+ on pseudo masks (S11) |") < table.index("| DeepLabV3+ on ground truth (S11")
    assert table.rstrip().endswith("0.800")


def test_stage_table_starts_with_the_all_building_baseline_and_follows_the_stage_order(tmp_path):
    from misc import fileio
    from step.report import stage_table

    scores = {"building_iou": 0.45, "f1": 0.62, "precision": 0.5, "recall": 0.8}
    fileio.save_json(tmp_path / "metrics_ar.json", {"stage": "AR map (S7)", "stage_flag": "make_amn_cam",
                                                    "tiles": 4, "threshold": 0.8123, "threshold_rule": "auto",
                                                    "scores": scores})
    fileio.save_json(tmp_path / "metrics_my_bac.json", {"stage": "my_bac", "stage_flag": "make_lpcam", "tiles": 4,
                                                        "threshold": 0.08, "scores": scores})
    fileio.save_json(tmp_path / "metrics_zz.json", {"stage": "seed CAM (S2)", "stage_flag": "make_cam", "tiles": 4,
                                                    "threshold": 0.08, "scores": scores,
                                                    "all_building_baseline_iou": 0.25})
    lines = stage_table(tmp_path).splitlines()
    assert lines[2] == '| predict "building" everywhere | 4 | | 0.2500 | 0.4000 | 0.2500 | 1.0000 |'
    assert lines[3].startswith("| seed CAM (S2) | 4 | 0.08 | 0.4500 |")
    assert lines[4].startswith("| BAC expanded CAM (S3) |") and lines[5].startswith("| AR map (S7) | 4 | auto 0.81 |")
