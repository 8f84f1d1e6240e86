"""S1 -> S2 -> S4 on the tiny dataset: file formats, resume, and the pipeline driver."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from misc import fileio
from net import cam
from net.checkpoints import load_net
from step import eval_cam, make_cam, train_cam
from step.kit import stamps
from tests.conftest import REPO, stage_args


pytestmark = pytest.mark.usefixtures("cpu_runtime")


def test_s1_s2_s4_write_spec_files(tiny_root, tmp_path):
    args = stage_args(tiny_root, tmp_path, "--cam_eval_sweep", "True", "--num_vis", "2")
    train_cam.run(args)
    assert (tmp_path / "sess" / "cam.pth").is_file() and (tmp_path / "sess" / "cam_deploy.pt").is_file()
    assert not (tmp_path / "sess" / "cam.resume.pth").exists()
    make_cam.run(args)
    positives = [n for n in (tiny_root / "train_aug_building.txt").read_text().split()]
    for name in positives:
        cam = fileio.load_npy_dict(tmp_path / "result" / "cam" / f"{name}.npy")
        assert cam["keys"].dtype == np.int64 and cam["keys"].tolist() == [0]
        assert cam["high_res"].shape == (1, 64, 64) and cam["high_res"].dtype == np.float32
        assert cam["cam"].shape == (1, 16, 16)
        assert 0 <= cam["high_res"].min() and cam["high_res"].max() < 1
    negatives = set((tiny_root / "train_aug.txt").read_text().split()) - set(positives)
    assert not any((tmp_path / "result" / "cam" / f"{n}.npy").exists() for n in negatives)
    eval_cam.run(args)
    result = json.loads((tmp_path / "result" / "metrics_cam.json").read_text())
    assert result["tiles"] == len(positives) and 0 <= result["scores"]["building_iou"] <= 1
    assert "best_threshold" in result and len(list((tmp_path / "result" / "vis" / "cam").glob("*.png"))) == 2
    assert (result["threshold"], result["threshold_rule"]) == (0.08, "fixed")
    args.cam_eval_thres = "auto"  # picked from the maps: their mean over the positives' pixels
    eval_cam.run(args)
    auto = json.loads((tmp_path / "result" / "metrics_cam.json").read_text())
    values = np.concatenate([fileio.load_npy_dict(tmp_path / "result" / "cam" / f"{n}.npy")["high_res"].ravel()
                             for n in positives])
    assert auto["threshold_rule"] == "auto" and auto["threshold"] == pytest.approx(values.mean(), abs=1e-4)
    args.cam_eval_thres = auto["threshold"]
    eval_cam.run(args)
    assert json.loads((tmp_path / "result" / "metrics_cam.json").read_text())["scores"] == auto["scores"]


def test_deploy_matches_train_time_cams(tiny_root, tmp_path):
    args = stage_args(tiny_root, tmp_path, "--cam_num_epoches", "1")
    train_cam.run(args)
    train = load_net(cam.Net, tmp_path / "sess" / "cam.pth", deploy=False)
    deploy = load_net(cam.Net, tmp_path / "sess" / "cam_deploy.pt", deploy=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(deploy.cam(deploy.features(x)), train.cam(train.features(x)), atol=1e-4, rtol=1e-4)


def test_resumed_training_ends_where_uninterrupted_does(tiny_root, tmp_path, monkeypatch):
    full = stage_args(tiny_root, tmp_path / "full", "--cam_num_epoches", "3")
    train_cam.run(full)

    class Interrupt(Exception):
        pass

    def stop_after_first_epoch(epoch: int) -> None:
        raise Interrupt

    from misc import trainloop
    original_fit = trainloop.fit
    monkeypatch.setattr(trainloop, "fit", lambda *a, **k: original_fit(*a, **{**k, "on_epoch_end": stop_after_first_epoch}))
    part = stage_args(tiny_root, tmp_path / "part", "--cam_num_epoches", "3")
    with pytest.raises(Interrupt):
        train_cam.run(part)
    assert (tmp_path / "part" / "sess" / "cam.resume.pth").is_file()
    monkeypatch.setattr(trainloop, "fit", original_fit)
    train_cam.run(part)
    a = torch.load(tmp_path / "full" / "sess" / "cam.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "sess" / "cam.pth", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_make_cam_resumes_only_from_same_model(tiny_root, tmp_path):
    args = stage_args(tiny_root, tmp_path, "--cam_num_epoches", "1")
    train_cam.run(args)
    make_cam.run(args)
    out = sorted((tmp_path / "result" / "cam").glob("*.npy"))
    first = out[0].stat().st_mtime_ns
    make_cam.run(args)  # same deploy file: every CAM is reused
    assert out[0].stat().st_mtime_ns == first
    stale = tmp_path / "result" / "cam" / "from_old_model.npy"
    stale.write_bytes(out[0].read_bytes())
    # an earlier run of S2 wrote it (its stamp lists it); an unlisted file would be refused, not deleted
    stamp_path = tmp_path / "result" / "cam" / stamps.STAMP
    stamp = json.loads(stamp_path.read_text())
    fileio.save_json(stamp_path, {**stamp, "outputs": [*stamp["outputs"], stale.name]})
    args.resume = False
    train_cam.run(args)  # a new model: every old CAM is removed before any new one is written
    args.resume = True
    make_cam.run(args)
    assert not stale.exists() and out[0].stat().st_mtime_ns != first


def test_finished_training_is_reused_only_for_the_same_data(tiny_root, tmp_path):
    args = stage_args(tiny_root, tmp_path, "--cam_num_epoches", "1")
    train_cam.run(args)
    checkpoint = tmp_path / "sess" / "cam.pth"
    first = checkpoint.stat().st_mtime_ns
    train_cam.run(args)  # same settings, same tiles: skipped
    assert checkpoint.stat().st_mtime_ns == first
    # the dataset is regenerated under the same names and labels (e.g. a new demo generator): retrained
    image = tiny_root / "JPEGImages" / f"{(tiny_root / 'train_aug.txt').read_text().split()[0]}.png"
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    fileio.save_png(image, noise)
    train_cam.run(args)
    assert checkpoint.stat().st_mtime_ns != first


def test_run_sample_reports_user_errors_in_one_line(tiny_root, tmp_path):
    (tiny_root / "train_aug.txt").write_text("tile_00\nno_such_tile\n")
    proc = subprocess.run([sys.executable, "run_sample.py", "--voc12_root", str(tiny_root), "--work_space",
                           str(tmp_path / "r"), "--train_cam_pass", "True", "--backbone", "RepVGG-Tiny",
                           "--device", "cpu"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no_such_tile" in errors[0] and "--train_list" in errors[0]
