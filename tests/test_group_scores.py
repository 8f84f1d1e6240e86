"""Scores per area: every evaluation of tiles cut from two or more areas or scenes (tiles.csv) also scores each
one, so a stage that helps one area and hurts another shows it."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from misc import fileio
from step import eval_cam, report
from step.kit.evaluation import group_scores, most_disagreeing
from tests.conftest import stage_args
from voc12.layout import read_tile_groups

pytestmark = pytest.mark.usefixtures("cpu_runtime")


def test_group_scores_sum_each_groups_tiles():
    confusions = {"a": np.array([[5, 1], [2, 8]]), "b": np.array([[1, 0], [0, 3]]), "c": np.array([[4, 4], [0, 0]])}
    table = group_scores(["a", "b", "c", "x"], {"a": "area1", "b": "area1", "c": "area3"}, confusions.__getitem__)
    assert list(table) == ["area1", "area3"]  # sorted; "x" has no group and is left out
    assert table["area1"]["tiles"] == 2 and table["area1"]["building_iou"] == pytest.approx(11 / (11 + 1 + 2))
    assert table["area3"]["building_iou"] == 0.0 and table["area3"]["all_building_baseline_iou"] == 0.0
    assert group_scores(["a", "b"], {"a": "area1", "b": "area1"}, confusions.__getitem__) == {}  # one group


def test_read_tile_groups(tiny_root, tmp_path):
    groups = read_tile_groups(tiny_root)
    assert groups and set(groups.values()) >= {"scene_0", "scene_1"}
    assert read_tile_groups(tmp_path) == {}  # no tiles.csv: a layout made by hand


def test_map_evaluation_scores_each_area(tiny_root, tmp_path, caplog):
    """Maps right on scene_0's tiles and all background on scene_1's: the pooled score hides what the per-area
    scores show."""
    groups = read_tile_groups(tiny_root)
    positives = (tiny_root / "train_aug_building.txt").read_text().split()
    for name in positives:
        gt = np.asarray(Image.open(tiny_root / "SegmentationClassAug" / f"{name}.png")) > 0
        building = gt if groups[name] == "scene_0" else np.zeros_like(gt)
        fileio.save_npy_dict(tmp_path / "maps" / f"{name}.npy", {"keys": np.zeros(1, np.int64),
                                                                  "high_res": building[None].astype(np.float32)})
    args = stage_args(tiny_root, tmp_path, "--eval_cam_dir", str(tmp_path / "maps"), "--cam_eval_thres", "0.5")
    with caplog.at_level(logging.INFO):
        eval_cam.run(args)
    metrics = json.loads((tmp_path / "result" / "metrics_maps.json").read_text())
    by_area = metrics["groups"]
    assert set(by_area) == {groups[n] for n in positives} >= {"scene_0", "scene_1"}
    assert sum(row["tiles"] for row in by_area.values()) == metrics["tiles"]
    assert by_area["scene_0"]["building_iou"] == pytest.approx(1.0) and by_area["scene_1"]["building_iou"] == 0.0
    assert 0 < metrics["scores"]["building_iou"] < 1
    assert "scene_1: " in caplog.text
    table = report.stage_table(tmp_path / "result")
    assert "| building IoU by area" in table and "| 1.0000 (" in table and "| 0.0000 (" in table


def test_many_scenes_are_one_log_line_and_listed_down_the_report(tmp_path, caplog):
    """A dataset of many scenes: more than MAX_GROUP_LINES groups are one log line (lowest and highest) and one
    report row each, not one column each."""
    from step.kit.evaluation import log_group_scores
    from step.kit.stages import MAX_GROUP_LINES

    n = MAX_GROUP_LINES + 4
    confusions = {f"t{i}": np.array([[10, 0], [10 - i, i]]) for i in range(n)}
    table = group_scores(list(confusions), {f"t{i}": f"scene_{i:02d}" for i in range(n)}, confusions.__getitem__)
    with caplog.at_level(logging.INFO):
        log_group_scores("S4", "maps", table)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and f"{n} groups" in lines[0] and "scene_00" in lines[0] and f"scene_{n - 1}" in lines[0]
    fileio.save_json(tmp_path / "metrics_maps.json", {"stage": "maps", "tiles": n, "threshold": 0.5,
                                                       "scores": {}, "groups": table})
    text = report.area_table([(tmp_path / "metrics_maps.json", json.loads((tmp_path / "metrics_maps.json").read_text()))])
    rows = [line for line in text.splitlines() if line.startswith("| scene_")]
    assert len(rows) == n and text.splitlines()[0].startswith("| building IoU by area or scene")


def test_most_disagreeing_ranks_each_way_by_share_of_the_tile():
    def row(name, pixels, fp, fn):  # confusion[truth, prediction]
        return {"name": name, "pixels": pixels, "confusion": np.array([[pixels - fp - fn, fp], [fn, 0]])}

    rows = [row("a", 100, 10, 0), row("b", 400, 20, 40), row("c", 100, 5, 0), row("d", 100, 10, 30)]
    found = most_disagreeing(rows, count=2)
    # by share, not by pixel count (b's 20 of 400 is below a's 10 of 100); a and d tie: by name
    assert found["building_not_in_truth"] == [{"name": "a", "share": 0.1}, {"name": "d", "share": 0.1}]
    assert found["truth_not_predicted"] == [{"name": "d", "share": 0.3}, {"name": "b", "share": 0.1}]
    assert most_disagreeing([row("a", 100, 0, 0)]) == {"building_not_in_truth": [], "truth_not_predicted": []}
