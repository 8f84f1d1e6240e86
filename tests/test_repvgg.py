"""net/RepVGG.py: deploy equivalence, output stride, official key format, checkpoint loading."""
from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

from misc.errors import UserError
from net import backbones
from net.RepVGG import (
    VARIANTS,
    RepVGGBlock,
    build_repvgg,
    repvgg_model_convert,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def randomise_bn(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN running stats and affine params, so folding bugs (eps, mean, gamma) show up.

    Ranges keep deep nets (A0, 22 blocks) at O(1)-O(10) activations, where 1e-4 absolute is meaningful.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                c = bn.num_features
                bn.running_mean.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
                bn.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
                bn.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                bn.bias.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)


def n_params(model: nn.Module) -> int:
    """Parameter count excluding the ImageNet classifier."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("linear."))


# --- block-level re-parameterisation --------------------------------------------------------------


@pytest.mark.parametrize("in_ch, out_ch, stride, groups, dilation", [
    (8, 8, 1, 1, 1),    # identity branch
    (8, 8, 1, 2, 1),    # identity branch with groups (i mod C_in/groups)
    (8, 16, 2, 1, 1),   # first block of a stage: no identity
    (8, 16, 2, 2, 1),
    (8, 8, 1, 4, 2),    # dilated, padding == dilation
])
def test_switch_to_deploy_matches_train_time_block(in_ch, out_ch, stride, groups, dilation):
    kw = dict(stride=stride, padding=dilation, dilation=dilation, groups=groups)
    block = RepVGGBlock(in_ch, out_ch, **kw).eval()
    randomise_bn(block)
    assert (block.rbr_identity is not None) == (in_ch == out_ch and stride == 1)
    x = torch.randn(2, in_ch, 16, 16)
    with torch.no_grad():
        expected = block(x)

    deployed = copy.deepcopy(block)
    deployed.switch_to_deploy()
    assert not any(hasattr(deployed, b) for b in ("rbr_dense", "rbr_1x1", "rbr_identity"))
    conv = deployed.rbr_reparam
    assert (conv.stride, conv.padding, conv.dilation, conv.groups) == (
        (stride, stride), (dilation, dilation), (dilation, dilation), groups)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), expected, atol=1e-4, rtol=0)

    weight = deployed.rbr_reparam.weight
    deployed.switch_to_deploy()  # idempotent: same module, same values
    assert deployed.rbr_reparam.weight is weight

    rebuilt = RepVGGBlock(in_ch, out_ch, deploy=True, **kw).eval()
    rebuilt.load_state_dict(deployed.state_dict(), strict=True)  # the trap timm's tests miss
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), expected, atol=1e-4, rtol=0)
    assert deployed.rbr_reparam.weight.requires_grad  # the trap in SMP's MobileOne
    assert deployed.rbr_reparam.bias.requires_grad
    assert rebuilt.rbr_reparam.weight.requires_grad


# --- whole-network equivalence and geometry -------------------------------------------------------


@pytest.mark.parametrize("name", ["RepVGG-Tiny", "RepVGG-A0"])
def test_network_deploy_equivalence(name):
    model = build_repvgg(name).eval()
    randomise_bn(model)
    x = torch.randn(2, 3, 64, 64)
    deployed = repvgg_model_convert(copy.deepcopy(model))
    rebuilt = build_repvgg(name, deploy=True).eval()
    rebuilt.load_state_dict(deployed.state_dict(), strict=True)
    with torch.no_grad():
        expected = model.forward_features(x)
        for other in (deployed, rebuilt):
            got = other.forward_features(x)
            assert [f.shape for f in got] == [f.shape for f in expected]
            assert (got[-1] - expected[-1]).abs().max().item() < 1e-4
            torch.testing.assert_close(other(x), model(x), atol=1e-4, rtol=0)
    assert all(p.requires_grad for p in deployed.parameters())
    assert not any("rbr_dense" in k for k in deployed.state_dict())


@pytest.mark.parametrize("deploy, convert", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("last_stride, last_size", [(1, 16), (2, 8)])
def test_output_stride(deploy, convert, last_stride, last_size):
    model = build_repvgg("RepVGG-Tiny", deploy=deploy, last_stride=last_stride).eval()
    if convert:  # a converted training-time model must keep the stage-4 edit
        repvgg_model_convert(model)
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, 256, 256))
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    assert [f.shape[-1] for f in feats] == [64, 32, 16, last_size]  # stage1..stage4: the backbone levels
    assert tuple(f.shape[1] for f in feats) == model.feature_channels == model.out_channels[1:]
    assert model.feature_strides == (4, 8, 16, 256 // last_size)


def test_unknown_variant_lists_valid_names():
    with pytest.raises(UserError, match="RepVGG-Foo.*RepVGG-A0.*RepVGG-B1g2.*RepVGG-Tiny"):
        build_repvgg("RepVGG-Foo")
    assert {"RepVGG-A0", "RepVGG-A1", "RepVGG-A2", "RepVGG-B0", "RepVGG-B1", "RepVGG-B1g2", "RepVGG-B1g4",
            "RepVGG-B2", "RepVGG-B2g4", "RepVGG-B3", "RepVGG-Tiny"} == set(VARIANTS)


def test_convert_works_on_a_wrapper():
    wrapper = nn.Sequential(build_repvgg("RepVGG-Tiny"), nn.Conv2d(8, 8, 1))
    repvgg_model_convert(wrapper)
    repvgg_model_convert(wrapper)  # idempotent
    assert not any("rbr_dense" in k or "rbr_1x1" in k for k in wrapper.state_dict())


# --- the official B1g2 format ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def b1g2() -> nn.Module:
    return build_repvgg("RepVGG-B1g2")


def test_b1g2_official_key_format(b1g2):
    sd = b1g2.state_dict()
    assert len(sd) == 453
    expected = {
        "stage0.rbr_dense.conv.weight": (64, 3, 3, 3),
        "stage0.rbr_1x1.conv.weight": (64, 3, 1, 1),
        "stage1.0.rbr_dense.conv.weight": (128, 64, 3, 3),
        "stage1.1.rbr_dense.conv.weight": (128, 64, 3, 3),  # groups 2
        "stage4.0.rbr_dense.conv.weight": (2048, 512, 3, 3),
        "stage4.0.rbr_1x1.conv.weight": (2048, 512, 1, 1),
        "linear.weight": (1000, 2048),
        "linear.bias": (1000,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    for suffix in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        assert f"stage0.rbr_dense.bn.{suffix}" in sd
        assert f"stage1.1.rbr_identity.{suffix}" in sd
    # identity only in non-first blocks of stages 1-3; groups 2 on blocks 2, 4, ..., 26
    assert not any(k.startswith(("stage0.rbr_identity", "stage4.")) and "rbr_identity" in k for k in sd)
    assert not any(".0.rbr_identity" in k for k in sd)
    assert b1g2.stage1[1].rbr_dense.conv.groups == 2 and b1g2.stage1[2].rbr_dense.conv.groups == 1
    assert b1g2.stage3[15].rbr_dense.conv.groups == 2 and b1g2.stage2[0].rbr_dense.conv.groups == 1
    assert b1g2.out_channels == (64, 128, 256, 512, 2048)


def test_b1g2_param_counts(b1g2):
    assert abs(n_params(b1g2) / 1e6 - 43.73) <= 0.01
    deployed = build_repvgg("RepVGG-B1g2", deploy=True)
    assert abs(n_params(deployed) / 1e6 - 39.31) <= 0.01
    assert len(deployed.state_dict()) == 28 * 2 + 2


# --- checkpoint loading -----------------------------------------------------------------------------


@pytest.mark.parametrize("wrapped", [False, True])
def test_checkpoint_round_trip(tmp_path, wrapped):
    source = build_repvgg("RepVGG-A0")
    randomise_bn(source)
    sd = source.state_dict()
    path = tmp_path / "RepVGG-A0-train.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}} if wrapped else sd, path)
    target = build_repvgg("RepVGG-A0")
    backbones.load_imagenet(target, "RepVGG-A0", path)
    for key, value in target.state_dict().items():
        assert torch.equal(value, sd[key]), key


def _raises_one_line(model: nn.Module, path, match: str) -> None:
    with pytest.raises(UserError, match=match) as info:
        backbones.load_imagenet(model, model.variant, path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_missing_keys(tmp_path):
    sd = build_repvgg("RepVGG-Tiny").state_dict()
    del sd["linear.weight"], sd["stage0.rbr_1x1.conv.weight"]
    torch.save(sd, tmp_path / "partial.pth")
    _raises_one_line(build_repvgg("RepVGG-Tiny"), tmp_path / "partial.pth",
                     r"2 missing keys \(first: linear.weight, stage0.rbr_1x1.conv.weight\)")


def test_other_variant(tmp_path):
    torch.save(build_repvgg("RepVGG-A0").state_dict(), tmp_path / "a0.pth")
    _raises_one_line(build_repvgg("RepVGG-A1"), tmp_path / "a0.pth",
                     r"0 missing keys.*mismatched shapes.*looks like a RepVGG-A0 checkpoint but --backbone is RepVGG-A1")


def test_deploy_checkpoint(tmp_path):
    torch.save(build_repvgg("RepVGG-Tiny", deploy=True).state_dict(), tmp_path / "deploy.pth")
    _raises_one_line(build_repvgg("RepVGG-Tiny"), tmp_path / "deploy.pth",
                     r"unexpected keys.*deploy checkpoint \(rbr_reparam keys\); use the -train.pth file")


def test_corrupt_and_absent_files(tmp_path):
    (tmp_path / "corrupt.pth").write_bytes(b"not a checkpoint at all")
    _raises_one_line(build_repvgg("RepVGG-Tiny"), tmp_path / "corrupt.pth", "not a readable PyTorch checkpoint")
    _raises_one_line(build_repvgg("RepVGG-Tiny"), tmp_path / "absent.pth", "does not exist")


def test_load_backbone_weights_warns_once(tmp_path, caplog):
    model = build_repvgg("RepVGG-Tiny")
    path = str(tmp_path / "RepVGG-B1g2-train.pth")
    with caplog.at_level(logging.WARNING, logger=backbones.__name__):
        assert backbones.load_pretrained(model, "RepVGG-B1g2", path) is False
        assert backbones.load_pretrained(model, "RepVGG-B1g2", path) is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (f"{path} not found: the RepVGG-B1g2 backbone starts from scratch "
                                        "(ImageNet weights: see weights/README.md)")

    torch.save(model.state_dict(), path)
    assert backbones.load_pretrained(build_repvgg("RepVGG-Tiny"), "RepVGG-Tiny", path) is True
