"""ResNet-50 (torchvision's layout and parameter names, so its ImageNet file loads strictly) at output
stride 16, as a backbone of every network (net.backbones)."""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3); children named as in torchvision."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 without its fc, OS 16: layer4 trades its stride for dilation 2, as torchvision's
    `resnet50(replace_stride_with_dilation=[False, False, True])` (its first block keeps dilation 1)."""

    feature_channels = (256, 512, 1024, 2048)   # layer1..layer4
    feature_strides = (4, 8, 16, 16)

    def __init__(self, output_stride: int = 16) -> None:
        if output_stride != 16:
            raise ValueError(f"resnet50 is built at output stride 16 only, not {output_stride}")
        super().__init__()
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2, dilate=True)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[layer1, ..., layer4] at strides 4, 8, 16, 16."""
        f1 = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [f1, f2, f3, self.layer4(f3)]


def imagenet_hint(state: Mapping[str, torch.Tensor], model: nn.Module) -> str:
    """Why an ImageNet file does not fit the resnet50 encoder (the registry's strict loader prints it)."""
    if any("rbr_dense" in k or "rbr_reparam" in k for k in state):
        return "it looks like a RepVGG checkpoint; pass its variant as the backbone"
    if "layer3.6.conv1.weight" in state:
        return "it looks like a ResNet-101/152 checkpoint; only resnet50 is supported"
    if "layer1.0.conv2.weight" in state and "layer1.0.conv3.weight" not in state:
        return "it looks like a ResNet-18/34 (BasicBlock) checkpoint; only resnet50 is supported"
    return "expected torchvision's resnet50 ImageNet weights (e.g. resnet50-0676ba61.pth)"


def imagenet_keys(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision's keys as the encoder has them: `module.` and `fc.*` dropped (the encoder has no fc), and
    `num_batches_tracked` buffers, absent from torchvision's files, kept at the model's value."""
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    counters = {k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}
    return {**{k: v for k, v in counters.items() if k not in state}, **state}
