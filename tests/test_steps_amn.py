"""S6 -> S9 on the tiny dataset: the AR network, file formats, resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from misc import fileio, imutils, thresholds
from misc.errors import UserError
from net import amn
from net.checkpoints import deploy_net, load_net, save_net
from step import (amn_cam_to_ir_label, cam_to_ir_label, eval_amn_cam, make_amn_cam, make_cam, make_lpcam,
                  make_pseudo_mask, train_amn, train_cam)
from tests.conftest import stage_args


pytestmark = pytest.mark.usefixtures("cpu_runtime")


def test_label_conditioning_changes_the_output():
    torch.manual_seed(0)
    model = amn.Net("RepVGG-Tiny").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pos = model(x, torch.ones(2, 1))
        neg = model(x, torch.zeros(2, 1))
    assert pos.shape == (2, 2, 4, 4)
    assert not torch.allclose(pos, neg)


def test_deploy_amn_matches_train_time(tmp_path):
    torch.manual_seed(0)
    model = amn.Net("RepVGG-Tiny").eval()
    save_net(model, tmp_path / "amn.pth")
    deploy_net(amn.Net, tmp_path / "amn.pth", tmp_path / "amn_deploy.pt")
    deploy = load_net(amn.Net, tmp_path / "amn_deploy.pt", deploy=True)
    x, y = torch.randn(2, 3, 64, 64), torch.ones(2, 1)
    with torch.no_grad():
        torch.testing.assert_close(deploy(x, y), model(x, y), atol=1e-4, rtol=1e-4)


@pytest.fixture
def labelled(tiny_root, tmp_path):
    """S1, S2, S3 and S5 on the tiny dataset: confident labels ready for S6."""
    args = stage_args(tiny_root, tmp_path, "--num_cluster", "3", "--bac_num_samples", "0", "--bac_select_thres", "0.5", "--amn_batch_size", "4",
                      "--amn_num_epoches", "2", "--amn_crop_size", "64", "--Lambda1", "0.5", "--num_vis", "2",
                      "--amn_weights_name", str(tmp_path / "sess" / "amn"))
    for stage in (train_cam, make_cam, make_lpcam, cam_to_ir_label):
        stage.run(args)
    return args


def test_dihedral_views_average_the_eight_turned_ar_predictions():
    # a label-conditioned stand-in for the AR network that sees each rotation differently
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 2, 3, padding=1)

    def model(x, labels):
        return conv(x) * labels[:, :, None, None]

    images = torch.randn(2, 3, 12, 12)
    packs = [{"img": [torch.stack([im, im.flip(-1)])]} for im in images]  # as ClassificationDatasetMSF gives them
    by_hand = []
    for k in range(4):
        for mirror in (False, True):
            view = torch.rot90(images, k, (-2, -1))
            out = conv(view.flip(-1)).flip(-1) if mirror else conv(view)
            by_hand.append(torch.rot90(out, -k, (-2, -1)))
    with torch.no_grad():
        dihedral = amn.multiscale_probs(model, packs, (12, 12), torch.device("cpu"), views="dihedral")
        flip = amn.multiscale_probs(model, packs, (12, 12), torch.device("cpu"))
        torch.testing.assert_close(dihedral, torch.softmax(torch.stack(by_hand).mean(0), 1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(flip, torch.softmax((by_hand[0] + by_hand[1]) / 2, 1), atol=1e-5, rtol=1e-5)


def test_s6_to_s9_write_spec_files(labelled, tiny_root, tmp_path):
    args = labelled
    train_amn.run(args)
    assert (tmp_path / "sess" / "amn.pth").is_file() and (tmp_path / "sess" / "amn_deploy.pt").is_file()
    make_amn_cam.run(args)
    positives = (tiny_root / "train_aug_building.txt").read_text().split()
    for name in positives:
        amn = fileio.load_npy_dict(tmp_path / "result" / "amn_cam" / f"{name}.npy")
        assert amn["keys"].tolist() == [0]
        assert amn["high_res"].shape == (2, 64, 64) and amn["high_res"].dtype == np.float32
        assert amn["cam"].shape == (2, 16, 16)
        assert amn["high_res"].min() >= 0 and amn["high_res"].max() <= 1
    eval_amn_cam.run(args)
    assert (tmp_path / "result" / "metrics_amn_cam.json").is_file()
    make_pseudo_mask.run(args)
    for name in (tiny_root / "train_aug.txt").read_text().split():
        mask = imutils.read_mask(tmp_path / "result" / "pseudo_mask" / f"{name}.png")
        assert mask.shape == (64, 64) and set(np.unique(mask).tolist()) <= {0, 1}
        if name not in positives:
            assert mask.max() == 0
    amn_cam_to_ir_label.run(args)
    for name in (tiny_root / "train_aug.txt").read_text().split():
        label = imutils.read_mask(tmp_path / "result" / "amn_ir_label" / f"{name}.png")
        assert set(np.unique(label).tolist()) <= {0, 1, 255}
    # 'auto': S8 scores and S9 cuts the masks at one value picked without ground truth: the cut at which the AR
    # maps best reproduce the S5 confident labels the AR network was trained on
    args.amn_eval_thres = "auto"
    eval_amn_cam.run(args)
    scored = json.loads((tmp_path / "result" / "metrics_amn_cam.json").read_text())
    building = {n: fileio.load_npy_dict(tmp_path / "result" / "amn_cam" / f"{n}.npy")["high_res"][1] for n in positives}
    building_sum = {n: 0.75 * fileio.load_npy_dict(tmp_path / "result" / "amn_cam" / f"{n}.npy")["high_res"].sum(0) + 0.25
                    for n in positives}  # both channels mixed: their sum moves a quarter of the way to 1
    levels = thresholds.LabelledLevels()
    for name, m in building.items():
        levels.add(m, imutils.read_mask(Path(args.ir_label_out_dir) / f"{name}.png"))
    t = scored["threshold"]
    assert scored["threshold_rule"] == "auto"
    assert t == thresholds.labels_cut(levels) != thresholds.operating_point(thresholds.levels_of(building.values()))
    make_pseudo_mask.run(args)
    for name, m in building.items():
        mask = imutils.read_mask(tmp_path / "result" / "pseudo_mask" / f"{name}.png")
        np.testing.assert_array_equal(mask, (m > t).astype(np.uint8))
    # --amn_views dihedral: a new stamp, so the maps are remade; flip (the reference) keeps the stamp of before
    before = make_amn_cam.made_from(args.amn_cam_out_dir)
    assert "views" not in before
    args.amn_views = "dihedral"
    make_amn_cam.run(args)
    assert make_amn_cam.made_from(args.amn_cam_out_dir)["views"] == "dihedral"
    args.amn_views = "flip"
    make_amn_cam.run(args)
    assert make_amn_cam.made_from(args.amn_cam_out_dir) == before
    # --amn_bac_weight: a new stamp, so the maps are remade, each mixed with its tile's BAC map
    args.amn_bac_weight = 0.25
    make_amn_cam.run(args)
    for name, m in building.items():
        bac = fileio.load_npy_dict(Path(args.lpcam_out_dir) / f"{name}.npy")["high_res"][0]
        mixed = fileio.load_npy_dict(tmp_path / "result" / "amn_cam" / f"{name}.npy")
        np.testing.assert_allclose(mixed["high_res"][1], 0.75 * m + 0.25 * bac, atol=1e-6)
        np.testing.assert_allclose(mixed["high_res"].sum(0), building_sum[name], atol=1e-5)
        assert mixed["cam"].shape == (2, 16, 16)
    missing = Path(args.lpcam_out_dir) / f"{positives[0]}.npy"
    missing.unlink()
    with pytest.raises(UserError, match="--make_lpcam_pass True first or set --amn_bac_weight 0"):
        make_amn_cam.run(args)


def test_s6_resume_and_skip(labelled, tmp_path, monkeypatch):
    from misc import trainloop

    class Interrupt(Exception):
        pass

    def stop(epoch: int) -> None:
        raise Interrupt

    original = trainloop.fit
    monkeypatch.setattr(trainloop, "fit", lambda *a, **k: original(*a, **{**k, "on_epoch_end": stop}))
    with pytest.raises(Interrupt):
        train_amn.run(labelled)
    assert (tmp_path / "sess" / "amn.resume.pth").is_file()
    monkeypatch.setattr(trainloop, "fit", original)
    train_amn.run(labelled)
    resumed = torch.load(tmp_path / "sess" / "amn.pth", weights_only=True)["model"]
    mtime = (tmp_path / "sess" / "amn.pth").stat().st_mtime_ns
    train_amn.run(labelled)  # finished with the same settings: skipped
    assert (tmp_path / "sess" / "amn.pth").stat().st_mtime_ns == mtime

    labelled.resume = False  # an uninterrupted run ends at the same weights
    train_amn.run(labelled)
    fresh = torch.load(tmp_path / "sess" / "amn.pth", weights_only=True)["model"]
    for key in fresh:
        torch.testing.assert_close(fresh[key], resumed[key], atol=1e-5, rtol=1e-4)

    labelled.resume = True  # a new loss setting is not answered with the weights of the old one
    mtime = (tmp_path / "sess" / "amn.pth").stat().st_mtime_ns
    labelled.amn_pcl_at = "pixels"
    train_amn.run(labelled)
    assert (tmp_path / "sess" / "amn.pth").stat().st_mtime_ns != mtime


@pytest.mark.parametrize("flag", ["--backbone", "--amn_backbone"])
def test_unknown_backbone_names_its_flag(flag):
    import run_sample
    from misc.errors import UserError

    with pytest.raises(UserError, match=f"'RepVGG-Foo' \\({flag}\\)"):
        run_sample.resolve_paths(run_sample.build_parser().parse_args([flag, "RepVGG-Foo"]))
    args = run_sample.resolve_paths(run_sample.build_parser().parse_args(["--backbone", "RepVGG-Tiny"]))
    assert args.amn_backbone == "RepVGG-Tiny"
