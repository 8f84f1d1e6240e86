"""The networks' checkpoint format: strict loads and one-line errors for the wrong file."""
from __future__ import annotations

import pytest
import torch

from misc.errors import UserError
from net import amn, cam, irn, msg_sr
from net.backbones import reparameterize
from net.checkpoints import deploy_net, load_net, save_net
from net.deeplabv3plus import DeepLabV3Plus


def test_wrong_kind_of_checkpoint_is_named(tmp_path):
    save_net(cam.Net("RepVGG-Tiny"), tmp_path / "cam.pth")
    with pytest.raises(UserError, match=r"cam\.pth is not a deploy RepVGG_cam checkpoint .*--train_cam_pass True"):
        load_net(cam.Net, tmp_path / "cam.pth", deploy=True)
    with pytest.raises(UserError, match=r"cam\.pth is not a train-time RepVGG_amn checkpoint .*--train_amn_pass True"):
        load_net(amn.Net, tmp_path / "cam.pth", deploy=False)
    with pytest.raises(UserError, match=r"RepVGG_cam weights .*missing\.pth do not exist; run --train_cam_pass True"):
        load_net(cam.Net, tmp_path / "missing.pth", deploy=False)


def test_tampered_and_corrupt_checkpoints(tmp_path):
    state = {"network": "RepVGG_cam", "backbone": "RepVGG-Tiny", "deploy": False,
             "model": cam.Net("RepVGG-Tiny").state_dict()}
    del state["model"]["classifier.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(UserError, match=r"partial\.pth does not match RepVGG_cam\(RepVGG-Tiny, deploy=False\): "
                                        r"Missing key.*classifier\.weight"):
        load_net(cam.Net, tmp_path / "partial.pth", deploy=False)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"junk\.pth is not a readable checkpoint") as caught:
        load_net(cam.Net, tmp_path / "junk.pth", deploy=False)
    assert "\n" not in str(caught.value)  # torch's several-line reason is cut to its first line


def test_backbone_comes_from_the_file(tmp_path):
    save_net(cam.Net("RepVGG-Tiny"), tmp_path / "cam.pth")
    deploy_net(cam.Net, tmp_path / "cam.pth", tmp_path / "cam_deploy.pt")
    model = load_net(cam.Net, tmp_path / "cam_deploy.pt", deploy=True)
    assert model.backbone_name == "RepVGG-Tiny" and not model.training
    assert any("rbr_reparam" in k for k in model.state_dict())


def test_network_ids_in_checkpoints_outlive_the_module_names():
    ids = {net: net.NETWORK for net in (cam.Net, amn.Net, msg_sr.Net, irn.Net, DeepLabV3Plus)}
    assert list(ids.values()) == ["RepVGG_cam", "RepVGG_amn", "RepVGG_MSG_SR", "RepVGG_irn", "DeepLabV3Plus"]


@pytest.mark.parametrize("deploy", [False, True])
def test_a_checkpoint_written_before_the_rename_loads(tmp_path, deploy):
    """The files of the old net/RepVGG_cam.py: the same dict, its id "RepVGG_cam", a deploy file holding rbr_reparam."""
    torch.manual_seed(0)
    model = cam.Net("RepVGG-Tiny").eval()
    if deploy:
        reparameterize(model)
    torch.save({"network": "RepVGG_cam", "backbone": "RepVGG-Tiny", "deploy": deploy, "model": model.state_dict(),
                "fingerprint": {"network": "net.RepVGG_cam"}}, tmp_path / "old.pth")
    loaded = load_net(cam.Net, tmp_path / "old.pth", deploy=deploy)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert any("rbr_reparam" in k for k in loaded.state_dict()) == deploy
