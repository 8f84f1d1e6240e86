"""RepVGG family (Ding et al., "RepVGG: Making VGG-style ConvNets Great Again", CVPR 2021).

Blocks, key names and group maps as in DingXiaoH/RepVGG; the deploy conversion is an explicit, tested
function (the release only had it as commented-out code).

Parameter names match the official DingXiaoH/RepVGG checkpoints (rbr_dense / rbr_1x1 / rbr_identity
at training time, rbr_reparam once deployed), so weights/RepVGG-B1g2-train.pth loads with strict=True.

There is one constructor path, `build_repvgg(name, deploy, last_stride)`. The stage-4 stride edit
(stride 1 in stage4, no dilation: OS 16) lives there, so a model built with deploy=True and a
training-time model converted with `switch_to_deploy` have identical geometry (the timm trap: a
deploy-time constructor that silently used different padding and still loaded strictly).

The registry (net/backbones.py) takes from here the folding (`repvgg_model_convert`) and the hint for an
ImageNet file that does not fit (`imagenet_hint`); its strict loader is the one of every family.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from misc.errors import UserError

log = logging.getLogger(__name__)

__all__ = [
    "RepVGGBlock",
    "RepVGG",
    "VARIANTS",
    "build_repvgg",
    "repvgg_model_convert",
    "imagenet_hint",
]


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
            dilation: int = 1, groups: int = 1) -> nn.Sequential:
    """Bias-free conv followed by BN; the children are named `conv` and `bn` as in the official code."""
    result = nn.Sequential()
    result.add_module("conv", nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                        dilation=dilation, groups=groups, bias=False))
    result.add_module("bn", nn.BatchNorm2d(out_channels))
    return result


def _fuse_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """K' = K * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps)."""
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class RepVGGBlock(nn.Module):
    """ReLU(BN(conv3x3(x)) + BN(conv1x1(x)) + [BN(x) if C_in == C_out and stride == 1]).

    After `switch_to_deploy()` (or when built with deploy=True) it is ReLU(conv3x3 with bias).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1, groups: int = 1, deploy: bool = False) -> None:
        super().__init__()
        # The folded kernel puts the 1x1 and identity taps at the 3x3 centre; that only lines up with
        # the 3x3 output when padding == dilation (the "same" padding of a dilated 3x3).
        if kernel_size != 3 or padding != dilation:
            raise ValueError(f"RepVGGBlock needs kernel_size=3 and padding == dilation, "
                             f"got kernel_size={kernel_size}, padding={padding}, dilation={dilation}")
        self.deploy = deploy
        self.in_channels = in_channels
        self.groups = groups
        self.nonlinearity = nn.ReLU()
        if deploy:
            self.rbr_reparam = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                         dilation=dilation, groups=groups, bias=True)
        else:
            has_identity = in_channels == out_channels and stride == 1
            self.rbr_identity = nn.BatchNorm2d(in_channels) if has_identity else None
            self.rbr_dense = conv_bn(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
            # 1x1 padding = padding - dilation * (k // 2) = 0: its single tap aligns with the 3x3 centre.
            self.rbr_1x1 = conv_bn(in_channels, out_channels, 1, stride, padding - dilation, 1, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.nonlinearity(self.rbr_reparam(x))
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return self.nonlinearity(out)

    def _identity_kernel(self, bn: nn.BatchNorm2d) -> torch.Tensor:
        """3x3 kernel with a 1 at the centre linking output channel i to input channel i mod (C_in / groups)."""
        in_per_group = self.in_channels // self.groups
        kernel = torch.zeros(self.in_channels, in_per_group, 3, 3, dtype=bn.weight.dtype, device=bn.weight.device)
        channels = torch.arange(self.in_channels, device=bn.weight.device)
        kernel[channels, channels % in_per_group, 1, 1] = 1.0
        return kernel

    @torch.no_grad()
    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single 3x3 kernel and bias equal (in eval mode) to the sum of the three branches."""
        if self.deploy:
            return self.rbr_reparam.weight.detach().clone(), self.rbr_reparam.bias.detach().clone()
        kernel, bias = _fuse_bn(self.rbr_dense.conv.weight, self.rbr_dense.bn)
        kernel_1x1, bias_1x1 = _fuse_bn(self.rbr_1x1.conv.weight, self.rbr_1x1.bn)
        kernel = kernel + F.pad(kernel_1x1, [1, 1, 1, 1])
        bias = bias + bias_1x1
        if self.rbr_identity is not None:
            kernel_id, bias_id = _fuse_bn(self._identity_kernel(self.rbr_identity), self.rbr_identity)
            kernel = kernel + kernel_id
            bias = bias + bias_id
        return kernel, bias

    def switch_to_deploy(self) -> None:
        """Fold the branches into rbr_reparam. Idempotent; the geometry is copied from rbr_dense.conv.

        Copying stride/padding/dilation/groups from the live conv (not from constructor arguments)
        keeps any later edit, such as the stage-4 stride drop, in the deployed model.
        """
        if self.deploy:
            return
        kernel, bias = self.get_equivalent_kernel_bias()
        dense = self.rbr_dense.conv
        reparam = nn.Conv2d(dense.in_channels, dense.out_channels, dense.kernel_size, stride=dense.stride,
                            padding=dense.padding, dilation=dense.dilation, groups=dense.groups, bias=True,
                            device=kernel.device, dtype=kernel.dtype)
        with torch.no_grad():
            # copy_ keeps the fresh Parameters trainable; the official detach_() loop froze them
            # (as segmentation_models_pytorch's fused MobileOne conv does), which would break fine-tuning a deployed model.
            reparam.weight.copy_(kernel)
            reparam.bias.copy_(bias)
        del self.rbr_dense, self.rbr_1x1, self.rbr_identity
        self.rbr_reparam = reparam
        self.deploy = True


class RepVGG(nn.Module):
    """RepVGG trunk: stage0 (one block) and stage1..stage4, then global pooling and a linear classifier.

    Blocks are numbered 1.. from the first block of stage1 (stage0 is not counted); `override_groups_map`
    maps those numbers to a group count (B1g2: groups=2 on blocks 2, 4, ..., 26).
    """

    out_channels: tuple[int, ...]  # stage0..stage4 widths, e.g. (64, 128, 256, 512, 2048) for B1g2
    variant: str = "custom RepVGG"  # set by build_repvgg; used in checkpoint error messages
    output_stride: int = 32         # 16 after build_repvgg's stage-4 stride drop

    def __init__(self, num_blocks: list[int] | tuple[int, ...], width_multiplier: list[float] | tuple[float, ...],
                 override_groups_map: dict[int, int] | None = None, deploy: bool = False,
                 num_classes: int = 1000) -> None:
        super().__init__()
        if len(num_blocks) != 4 or len(width_multiplier) != 4:
            raise ValueError(f"num_blocks and width_multiplier need 4 entries, got {num_blocks}, {width_multiplier}")
        self.deploy = deploy
        self.override_groups_map = dict(override_groups_map or {})
        if 0 in self.override_groups_map:
            raise ValueError("override_groups_map counts blocks from 1 (stage0 is not grouped)")
        widths = [int(64 * width_multiplier[0]), int(128 * width_multiplier[1]),
                  int(256 * width_multiplier[2]), int(512 * width_multiplier[3])]
        stage0_width = min(64, int(64 * width_multiplier[0]))
        self.out_channels = (stage0_width, *widths)

        self.in_planes = stage0_width
        self.cur_layer_idx = 1
        self.stage0 = RepVGGBlock(3, stage0_width, kernel_size=3, stride=2, padding=1, deploy=deploy)
        self.stage1 = self._make_stage(widths[0], num_blocks[0], stride=2)
        self.stage2 = self._make_stage(widths[1], num_blocks[1], stride=2)
        self.stage3 = self._make_stage(widths[2], num_blocks[2], stride=2)
        self.stage4 = self._make_stage(widths[3], num_blocks[3], stride=2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(widths[3], num_classes)

    def _make_stage(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            groups = self.override_groups_map.get(self.cur_layer_idx, 1)
            blocks.append(RepVGGBlock(self.in_planes, planes, kernel_size=3, stride=block_stride, padding=1,
                                      groups=groups, deploy=self.deploy))
            self.in_planes = planes
            self.cur_layer_idx += 1
        return nn.Sequential(*blocks)

    @property
    def feature_channels(self) -> tuple[int, ...]:
        """Widths of the four levels of `forward_features` (stage1..stage4)."""
        return self.out_channels[1:]

    @property
    def feature_strides(self) -> tuple[int, ...]:
        return (4, 8, 16, self.output_stride)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs [stage1, ..., stage4] (the backbone levels of net.backbones); strides 4, 8, 16 and
        16 (last_stride=1) or 32."""
        features = []
        x = self.stage0(x)
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4):
            x = stage(x)
            features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes) logits."""
        x = self.forward_features(x)[-1]
        return self.linear(torch.flatten(self.gap(x), 1))


class RepVGGConfig(NamedTuple):
    num_blocks: tuple[int, int, int, int]
    width_multiplier: tuple[float, float, float, float]
    groups_map: dict[int, int]


_OPTIONAL_GROUPWISE_LAYERS = range(2, 27, 2)  # blocks 2, 4, ..., 26 (official "optional_groupwise_layers")
_G2_MAP = {layer: 2 for layer in _OPTIONAL_GROUPWISE_LAYERS}
_G4_MAP = {layer: 4 for layer in _OPTIONAL_GROUPWISE_LAYERS}

VARIANTS: dict[str, RepVGGConfig] = {
    "RepVGG-A0": RepVGGConfig((2, 4, 14, 1), (0.75, 0.75, 0.75, 2.5), {}),
    "RepVGG-A1": RepVGGConfig((2, 4, 14, 1), (1, 1, 1, 2.5), {}),
    "RepVGG-A2": RepVGGConfig((2, 4, 14, 1), (1.5, 1.5, 1.5, 2.75), {}),
    "RepVGG-B0": RepVGGConfig((4, 6, 16, 1), (1, 1, 1, 2.5), {}),
    "RepVGG-B1": RepVGGConfig((4, 6, 16, 1), (2, 2, 2, 4), {}),
    "RepVGG-B1g2": RepVGGConfig((4, 6, 16, 1), (2, 2, 2, 4), _G2_MAP),
    "RepVGG-B1g4": RepVGGConfig((4, 6, 16, 1), (2, 2, 2, 4), _G4_MAP),
    "RepVGG-B2": RepVGGConfig((4, 6, 16, 1), (2.5, 2.5, 2.5, 5), {}),
    "RepVGG-B2g4": RepVGGConfig((4, 6, 16, 1), (2.5, 2.5, 2.5, 5), _G4_MAP),
    "RepVGG-B3": RepVGGConfig((4, 6, 16, 1), (3, 3, 3, 5), {}),
    # Not an ImageNet model: a tiny member (block 2 grouped so tests cover groups) for tests and CPU smoke runs.
    "RepVGG-Tiny": RepVGGConfig((1, 2, 2, 1), (0.25, 0.25, 0.25, 0.5), {2: 2}),
}


def _drop_last_stride(stage4: nn.Sequential) -> None:
    """The reference's stage-4 edit: stride 1 in stage4, no dilation, so OS 16 instead of 32."""
    for name, module in stage4.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        if "rbr_dense" in name or "rbr_reparam" in name:
            module.stride, module.padding, module.dilation = (1, 1), (1, 1), (1, 1)
        elif "rbr_1x1" in name:
            module.stride = (1, 1)


def build_repvgg(name: str, deploy: bool = False, last_stride: int = 1) -> RepVGG:
    """The only constructor. last_stride=1 applies the stage-4 stride drop (OS 16); 2 keeps OS 32."""
    if name not in VARIANTS:
        raise UserError(f"unknown RepVGG variant {name!r} (--backbone); valid names: {', '.join(VARIANTS)}")
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 (OS 16) or 2 (OS 32), got {last_stride}")
    cfg = VARIANTS[name]
    model = RepVGG(cfg.num_blocks, cfg.width_multiplier, cfg.groups_map, deploy=deploy)
    model.variant = name
    if last_stride == 1:
        _drop_last_stride(model.stage4)
        model.output_stride = 16
    return model


def repvgg_model_convert(model: nn.Module) -> nn.Module:
    """Call switch_to_deploy on every submodule that has it (in place); works on any wrapper. Returns model.
    RepVGG's folding; the networks reach it through `net.backbones.reparameterize`."""
    # Collect first: switch_to_deploy replaces children, so do not mutate while walking the tree.
    convertible = [m for m in model.modules() if hasattr(m, "switch_to_deploy")]
    for module in convertible:
        module.switch_to_deploy()
    return model


# --- ImageNet files: what one that does not fit looks like ------------------------------------------


def _block_weight(state: Mapping[str, torch.Tensor], prefix: str) -> torch.Tensor | None:
    """The 3x3 weight of one block in either form (training-time or deployed)."""
    return state.get(f"{prefix}.rbr_dense.conv.weight", state.get(f"{prefix}.rbr_reparam.weight"))


def _signature(state: Mapping[str, torch.Tensor]) -> tuple | None:
    """(blocks per stage, widths, groups per block) read from a state dict; None if it is not RepVGG-like."""
    stage0 = _block_weight(state, "stage0")
    if stage0 is None:
        return None
    blocks, widths, groups = [], [int(stage0.shape[0])], []
    in_ch = int(stage0.shape[0])
    for s in range(1, 5):
        count = 0
        while (w := _block_weight(state, f"stage{s}.{count}")) is not None:
            groups.append(in_ch // max(1, int(w.shape[1])))
            in_ch = int(w.shape[0])
            count += 1
        if count == 0:
            return None
        blocks.append(count)
        widths.append(in_ch)
    return tuple(blocks), tuple(widths), tuple(groups)


def _guess_variant(state: Mapping[str, torch.Tensor]) -> str | None:
    sig = _signature(state)
    if sig is None:
        return None
    for name in VARIANTS:
        model_sig = _config_signature(VARIANTS[name])
        if model_sig == sig:
            return name
    return None


def _config_signature(cfg: RepVGGConfig) -> tuple:
    w = cfg.width_multiplier
    widths = (min(64, int(64 * w[0])), int(64 * w[0]), int(128 * w[1]), int(256 * w[2]), int(512 * w[3]))
    groups = tuple(cfg.groups_map.get(i, 1) for i in range(1, sum(cfg.num_blocks) + 1))
    return tuple(cfg.num_blocks), widths, groups


def imagenet_hint(state: Mapping[str, torch.Tensor], model: RepVGG) -> str:
    """Why an ImageNet file does not fit `model` (the registry's strict loader prints it)."""
    ckpt_deploy = any("rbr_reparam" in k for k in state)
    ckpt_train = any("rbr_dense" in k for k in state)
    if ckpt_deploy and not model.deploy:
        return "it looks like a deploy checkpoint (rbr_reparam keys); use the -train.pth file"
    if ckpt_train and model.deploy:
        return "it looks like a training-time checkpoint; load it into a deploy=False model, then convert"
    guess = _guess_variant(state)
    if guess is not None and guess != model.variant:
        return f"it looks like a {guess} checkpoint but --backbone is {model.variant}"
    linear = state.get("linear.weight")
    if linear is not None and linear.shape != model.linear.weight.shape:
        return (f"the classifier has {linear.shape[0]} classes, the model {model.linear.out_features}; "
                "expected an official ImageNet RepVGG checkpoint")
    return f"expected the official {model.variant}-train.pth from DingXiaoH/RepVGG"
