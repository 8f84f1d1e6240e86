"""The MSG-SR-Net baseline (S1 / S2 variant B): two-channel heads, the
multi-level loss, the level-weighted maps, and S1 -> S2 -> S4 under its own checkpoint name."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from misc import fileio
from net import msg_sr
from net.checkpoints import load_net
from step import eval_cam, make_cam, train_cam
from tests.conftest import stage_args

MSG = ("--cam_network", "msg")


pytestmark = pytest.mark.usefixtures("cpu_runtime")


def test_four_two_channel_heads_at_strides_4_8_16_16():
    torch.manual_seed(0)
    model = msg_sr.Net("RepVGG-Tiny").eval()
    x = torch.randn(2, 3, 64, 64)
    logits = model(x)
    assert [tuple(z.shape) for z in logits] == [(2, 2)] * 4
    assert [tuple(c.shape) for c in model.cams(x)] == [(2, 2, 16, 16), (2, 2, 8, 8), (2, 2, 4, 4), (2, 2, 4, 4)]
    backbone, new = model.param_groups()
    assert len(new) == 4 * 4 + 4  # CG units (conv weight, bias, BN weight, bias) and bias-free heads
    assert not any(p is q for p in backbone for q in new)


def test_loss_is_the_weighted_cross_entropy_and_works_for_both_labels():
    torch.manual_seed(0)
    logits = [torch.randn(3, 2) for _ in range(4)]
    labels = torch.tensor([[1.0], [0.0], [1.0]])
    expected = sum(w * F.cross_entropy(z, torch.tensor([1, 0, 1])) for w, z in zip((0.3, 0.3, 0.3, 1.0), logits))
    torch.testing.assert_close(msg_sr.msg_loss(logits, labels), expected)
    # the release's one-logit heads gave 0 for negatives; two channels give a real loss for either label
    for label in (0.0, 1.0):
        assert msg_sr.msg_loss([torch.zeros(1, 2)] * 4, torch.tensor([[label]])) > 0


def test_maps_weight_the_normalised_levels():
    """Levels with known maps: each building channel is normalised by its maximum, levels 1-3 count 1/3."""
    h = w = 32
    level_maps = [torch.rand(2, 2, h // s, w // s) for s in (4, 8, 16, 16)]

    class Known(torch.nn.Module):
        def cams(self, x):
            return level_maps

    pack = {"name": "t", "size": (h, w), "img": [torch.zeros(2, 3, h, w)]}
    got = msg_sr.multiscale_msg_cam(Known(), [pack], torch.device("cpu"))
    from misc.camutils import max_normalise, merge_flips, upsample_crop
    total = sum(wt * max_normalise(upsample_crop(merge_flips(m)[:, 1:2], (h, w)))
                for wt, m in zip((1 / 3, 1 / 3, 1 / 3, 1.0), level_maps))
    torch.testing.assert_close(got, total / (total.amax() + 1e-5))


def test_s1_s2_s4_under_its_own_name(tiny_root, tmp_path):
    args = stage_args(tiny_root, tmp_path, *MSG)
    train_cam.run(args)
    assert (tmp_path / "sess" / "msg.pth").is_file()
    # the fingerprint records the canonical short name, whichever spelling was given
    ckpt = torch.load(tmp_path / "sess" / "msg.pth", map_location="cpu", weights_only=True)
    assert ckpt["fingerprint"]["cam_network"] == "msg"
    assert not (tmp_path / "sess" / "cam.pth").exists() and not (tmp_path / "sess" / "msg_deploy.pt").exists()
    model = load_net(msg_sr.Net, tmp_path / "sess" / "msg.pth")
    assert isinstance(model, msg_sr.Net)
    make_cam.run(args)
    positives = (tiny_root / "train_aug_building.txt").read_text().split()
    for name in positives:
        maps = fileio.load_npy_dict(tmp_path / "result" / "cam" / f"{name}.npy")
        assert set(maps) == {"keys", "high_res"} and maps["keys"].tolist() == [0]
        assert maps["high_res"].shape == (1, 64, 64) and maps["high_res"].dtype == np.float32
        assert 0 <= maps["high_res"].min() and maps["high_res"].max() < 1
    eval_cam.run(args)
    result = json.loads((tmp_path / "result" / "metrics_cam.json").read_text())
    assert result["tiles"] == len(positives)
    # the single-head classifier's S2 refuses the MSG file with a one-line error naming the fix
    from misc.errors import UserError
    with pytest.raises(UserError, match="train_cam_pass"):
        make_cam.run(stage_args(tiny_root, tmp_path, "--cam_weights_name", str(tmp_path / "sess" / "msg")))


def test_old_cam_network_values_are_aliases_of_the_short_names(caplog):
    import logging

    import run_sample

    parser = run_sample.build_parser()
    assert parser.parse_args([]).cam_network == "single"
    assert parser.parse_args(["--cam_network", "msg"]).cam_network == "msg"
    for old, new in (("net.RepVGG_cam", "single"), ("net.RepVGG_MSG_SR", "msg")):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert parser.parse_args(["--cam_network", old]).cam_network == new
        assert [r.getMessage() for r in caplog.records] == [f"--cam_network {old} is now called {new}; mapped to it"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--cam_network", "net.cam"])
