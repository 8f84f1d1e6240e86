"""A dataset without a single mask (`voc12.prepare labels`) goes through script/generate_pseudo_mask.sh and
script/train_segmentation.sh to footprints.geojson; every evaluation says it has no ground truth and exits 0."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from voc12 import demo, prepare

pytestmark = pytest.mark.slow


def masks_free_demo(tmp_path: Path, scenes: int = 3) -> tuple[Path, dict[str, int]]:
    """The demo's images and image labels, as a person would give them: a folder of tiles and a CSV (the
    demo's dropped tiles stay unlabelled), prepared with the demo's test scenes held out."""
    source = tmp_path / "demo"
    demo.make_demo(source, seed=0, num_scenes=scenes)
    labels = {k: int(v[0]) for k, v in np.load(source / "cls_labels.npy", allow_pickle=True).item().items()}
    with open(source / "tiles.csv", newline="") as f:
        groups = {row["name"]: row["group"] for row in csv.DictReader(f)}
    test_groups = sorted({groups[n] for n in (source / "test.txt").read_text().split()})
    rows = ["name,label,group"] + [f"{n}.png,{'yes' if v else 'no'},{groups[n]}" for n, v in sorted(labels.items())]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    root = tmp_path / "dataset"
    prepare.run(prepare.parse_args(["labels", "--images", str(source / "JPEGImages"), "--labels",
                                    str(tmp_path / "labels.csv"), "--out", str(root),
                                    "--test_groups", ",".join(test_groups)]))
    return root, labels


def _script(name: str, root: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRTUAL_ENV": os.environ.get("VIRTUAL_ENV", sys.prefix), "DATASET_ROOT": str(root),
           "WORK_SPACE": str(tmp_path / "result"), "SESS": str(tmp_path / "sess"), "BACKBONE": "RepVGG-Tiny",
           "CAM_EPOCHS": "1", "CAM_BATCH": "8", "AMN_EPOCHS": "1", "SEG_EPOCHS": "1", "SEG_BATCH": "8",
           "THRESHOLDS": "auto", "BAC_SAMPLES": "0", "DEVICE": "cpu", "AMP": "none",
           "EVAL_SEED_CAM": "False"}  # S4 says the same of the BAC maps
    return subprocess.run(["bash", str(REPO / "script" / name)], env=env, capture_output=True, text=True, timeout=1200)


def test_a_masks_free_dataset_goes_through_both_scripts_to_footprints(tmp_path):
    root, labels = masks_free_demo(tmp_path)
    assert not (root / "SegmentationClassAug").exists()
    assert np.load(root / "cls_labels.npy", allow_pickle=True).item().keys() == labels.keys()
    first = _script("generate_pseudo_mask.sh", root, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = _script("train_segmentation.sh", root, tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    log = first.stdout + first.stderr + second.stdout + second.stderr
    assert "Traceback" not in log and "error:" not in log
    result = tmp_path / "result"
    # S11 learnt from the pseudo masks (there is nothing else) and S12 made polygons of its masks
    assert len(list((result / "pseudo_mask").glob("*.png"))) == len((root / "train_aug.txt").read_text().split())
    assert "upper bound on ground truth is skipped" in second.stdout
    footprints = json.loads((result / "footprints.geojson").read_text())
    assert footprints["type"] == "FeatureCollection"
    # every evaluation said, once, that it had no ground truth, and wrote what it could instead
    for name in ("metrics_lpcam_mask.json", "metrics_amn_cam.json", "metrics_seg.json"):
        metrics = json.loads((result / name).read_text())
        assert metrics["ground_truth"] is False and 0 <= metrics["building_fraction"] <= 1, name
    assert log.count("no ground truth (") == 3
    assert json.loads((result / "metrics_ir_label.json").read_text())["ground_truth"] is False
    table = subprocess.run([sys.executable, "-m", "step.report", "--work_space", str(result)], cwd=REPO,
                           capture_output=True, text=True).stdout
    assert table.count("no ground truth") == 4 and "auto " in table and "coverage " in table
