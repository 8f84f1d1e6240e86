"""Evaluations with ground truth for some tiles or for none (a dataset of `voc12.prepare labels`): scores over
the tiles that have it, saying how many; without any, one line saying so, the threshold and the building
fraction instead, and a stage table that shows "no ground truth" where a score would be."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misc import fileio
from step import eval_cam, eval_seg, report
from tests.conftest import stage_args

pytestmark = pytest.mark.usefixtures("cpu_runtime")


def _maps(root: Path, folder: Path) -> list[str]:
    """A map per positive: its ground truth itself, so a score is 1.0 at any threshold."""
    positives = (root / "train_aug_building.txt").read_text().split()
    for name in positives:
        gt = np.asarray(Image.open(root / "SegmentationClassAug" / f"{name}.png"))
        fileio.save_npy_dict(folder / f"{name}.npy", {"keys": np.zeros(1, np.int64),
                                                       "high_res": (gt[None] > 0).astype(np.float32)})
    return positives


@pytest.mark.parametrize("kept", ["all", "some", "none"])
def test_map_evaluation_with_all_some_or_no_ground_truth(tiny_root, tmp_path, caplog, kept):
    positives = _maps(tiny_root, tmp_path / "maps")
    gt_dir = tiny_root / "SegmentationClassAug"
    if kept == "some":
        (gt_dir / f"{positives[0]}.png").unlink()
    elif kept == "none":
        shutil.rmtree(gt_dir)
    args = stage_args(tiny_root, tmp_path, "--eval_cam_dir", str(tmp_path / "maps"), "--cam_eval_thres", "auto")
    with caplog.at_level(logging.INFO):
        eval_cam.run(args)
    metrics = json.loads((tmp_path / "result" / "metrics_maps.json").read_text())
    if kept == "none":
        assert metrics["ground_truth"] is False and "scores" not in metrics
        assert metrics["tiles"] == len(positives) and 0 < metrics["building_fraction"] < 1
        assert caplog.text.count("no ground truth (") == 1
        row = report.stage_table(tmp_path / "result").splitlines()[2]
        assert "no ground truth" in row and "auto " in row and "building 0." in row
    else:
        assert metrics["scores"]["building_iou"] == pytest.approx(1.0)
        scored = len(positives) - (kept == "some")
        assert metrics["tiles"] == scored and ("tiles_listed" in metrics) == (kept == "some")
        if kept == "some":
            assert f"scores over the {scored} of {len(positives)} positives" in caplog.text
            assert f"| {scored} of {len(positives)} |" in report.stage_table(tmp_path / "result")


def test_segmentation_evaluation_without_ground_truth(tiny_root, tmp_path, caplog):
    names = (tiny_root / "test.txt").read_text().split()
    for name in names:
        fileio.save_png(tmp_path / "seg" / f"{name}.png", np.ones((64, 64), np.uint8))
    shutil.rmtree(tiny_root / "SegmentationClassAug")
    args = stage_args(tiny_root, tmp_path, "--seg_out_dir", str(tmp_path / "seg"),
                      "--seg_weights_name", str(tmp_path / "sess" / "seg"))
    with caplog.at_level(logging.INFO):
        eval_seg.run(args)
    metrics = json.loads((tmp_path / "result" / "metrics_seg.json").read_text())
    assert metrics["ground_truth"] is False and metrics["building_fraction"] == 1.0
    assert caplog.text.count("no ground truth (") == 1
    assert "no ground truth" in report.stage_table(tmp_path / "result")


def test_confident_label_precision_counts_only_the_tiles_with_ground_truth():
    from collections import Counter

    from misc.crf import label_quality, quality_scores

    label = np.array([[1, 1], [0, 255]], np.uint8)
    with_gt = label_quality(label, np.array([[1, 0], [0, 0]], np.uint8))
    without = label_quality(label)  # a tile with no mask: counted in the coverage, not in the precision
    scores = quality_scores(Counter(with_gt) + Counter(without))
    assert scores["coverage"] == pytest.approx(6 / 8)
    assert (scores["building_precision"], scores["background_precision"]) == (0.5, 1.0)
