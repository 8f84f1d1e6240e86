"""The networks' checkpoint format: strict loads and one-line errors for the wrong file."""
from __future__ import annotations

import pytest
import torch

from misc.errors import UserError
from net import RepVGG_amn, RepVGG_cam


def test_wrong_kind_of_checkpoint_is_named(tmp_path):
    cam = RepVGG_cam.Net("RepVGG-Tiny")
    RepVGG_cam.save_cam_net(cam, tmp_path / "cam.pth", deploy=False)
    with pytest.raises(UserError, match=r"cam\.pth is not a deploy RepVGG_cam checkpoint .*--train_cam_pass True"):
        RepVGG_cam.load_cam_net(tmp_path / "cam.pth", deploy=True)
    with pytest.raises(UserError, match=r"cam\.pth is not a train-time RepVGG_amn checkpoint .*--train_amn_pass True"):
        RepVGG_amn.load_amn_net(tmp_path / "cam.pth", deploy=False)
    with pytest.raises(UserError, match=r"RepVGG_cam weights .*missing\.pth do not exist; run --train_cam_pass True"):
        RepVGG_cam.load_cam_net(tmp_path / "missing.pth", deploy=False)


def test_tampered_and_corrupt_checkpoints(tmp_path):
    cam = RepVGG_cam.Net("RepVGG-Tiny")
    state = {"network": "RepVGG_cam", "backbone": "RepVGG-Tiny", "deploy": False, "model": cam.state_dict()}
    del state["model"]["classifier.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(UserError, match=r"partial\.pth does not match RepVGG_cam\(RepVGG-Tiny, deploy=False\): "
                                        r"Missing key.*classifier\.weight"):
        RepVGG_cam.load_cam_net(tmp_path / "partial.pth", deploy=False)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"junk\.pth is not a readable checkpoint") as caught:
        RepVGG_cam.load_cam_net(tmp_path / "junk.pth", deploy=False)
    assert "\n" not in str(caught.value)  # torch's several-line reason is cut to its first line


def test_backbone_comes_from_the_file(tmp_path):
    RepVGG_cam.save_cam_net(RepVGG_cam.Net("RepVGG-Tiny"), tmp_path / "cam.pth", deploy=False)
    RepVGG_cam.deploy_cam_net(tmp_path / "cam.pth", tmp_path / "cam_deploy.pt")
    model = RepVGG_cam.load_cam_net(tmp_path / "cam_deploy.pt", deploy=True)
    assert model.backbone_name == "RepVGG-Tiny" and not model.training
    assert any("rbr_reparam" in k for k in model.state_dict())
