"""`--cam_eval_thres auto_neg` through the stages: S2 maps the negatives into their own folder, S4 picks the
cut with them (misc.thresholds.negatives_cut), and refuses maps without negatives' maps in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from misc import fileio, thresholds
from misc.errors import UserError
from step import eval_cam, make_cam, train_cam
from step.report import stage_table
from tests.conftest import stage_args

pytestmark = pytest.mark.usefixtures("cpu_runtime")


def test_auto_neg_maps_the_negatives_and_picks_the_cut_with_them(tiny_root, tmp_path):
    args = stage_args(tiny_root, tmp_path, "--cam_num_epoches", "1", "--num_vis", "0")
    train_cam.run(args)
    make_cam.run(args)  # without auto_neg: no negatives' maps
    assert not (tmp_path / "result" / "cam_neg").exists()
    args.cam_eval_thres = thresholds.AUTO_NEG
    with pytest.raises(UserError, match="auto_neg needs the negatives' seed CAMs.*run --make_cam_pass True"):
        eval_cam.run(args)
    seeds = {p: p.stat().st_mtime_ns for p in (tmp_path / "result" / "cam").glob("*.npy")}
    make_cam.run(args)
    assert {p: p.stat().st_mtime_ns for p in seeds} == seeds  # the positives' maps are kept
    names = (tiny_root / "train_aug.txt").read_text().split()
    positives = (tiny_root / "train_aug_building.txt").read_text().split()
    negatives = [n for n in names if n not in positives]
    assert sorted(p.stem for p in (tmp_path / "result" / "cam_neg").glob("*.npy")) == sorted(negatives)
    eval_cam.run(args)
    result = json.loads((tmp_path / "result" / "metrics_cam.json").read_text())
    load = lambda folder, ns: thresholds.levels_of(  # noqa: E731
        fileio.load_npy_dict(tmp_path / "result" / folder / f"{n}.npy")["high_res"][0] for n in ns)
    infer = (tiny_root / "train_aug_building.txt").read_text().split()
    expected = thresholds.negatives_cut(load("cam", infer), load("cam_neg", negatives))
    assert (result["threshold_rule"], result["threshold"]) == ("auto_neg", expected)
    assert f"auto_neg {expected:.2f}" in stage_table(tmp_path / "result")


def test_auto_neg_refuses_maps_of_other_stages_and_other_models(tiny_root, tmp_path):
    args = stage_args(tiny_root, tmp_path, "--cam_num_epoches", "1", "--cam_eval_thres", "auto_neg")
    train_cam.run(args)
    make_cam.run(args)
    bac = tmp_path / "result" / "bac"  # maps that no stage stamped as seed CAMs
    for path in (tmp_path / "result" / "cam").glob("*.npy"):
        fileio.save_npy_dict(bac / path.name, fileio.load_npy_dict(path))
    args.eval_cam_dir = str(bac)
    with pytest.raises(UserError, match="auto_neg needs the maps of the negative tiles, which only the seed CAMs"):
        eval_cam.run(args)
    args.eval_cam_dir = None
    stamp = tmp_path / "result" / "cam_neg" / ".source.json"
    record = json.loads(stamp.read_text())
    stamp.write_text(json.dumps({**record, "weights": {"sha256": "another"}}))
    with pytest.raises(UserError, match="another classifier"):
        eval_cam.run(args)


def test_only_the_cut_flag_takes_auto_neg(tiny_root, tmp_path, capsys):
    with pytest.raises(SystemExit):
        stage_args(tiny_root, tmp_path, "--conf_fg_thres", "auto_neg")
    assert "'auto'" in capsys.readouterr().err
    assert stage_args(tiny_root, tmp_path, "--cam_eval_thres", "auto_neg").cam_eval_thres == "auto_neg"
    assert np.isclose(stage_args(tiny_root, tmp_path, "--cam_eval_thres", "0.2").cam_eval_thres, 0.2)
