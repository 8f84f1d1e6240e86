"""DeepLabV3+ (Chen et al., ECCV 2018) in plain torch: the S11 segmentation network (SPEC S11).

SPEC S11 only says "DeepLabV3+ in PaddleSeg 2.9" with no configuration; this is the common form:
- encoder (SMP contract, STYLE B3): `encoder(x)` returns the stage features [stride 2, 4, 8, 16, 16]
  and has `out_channels`; the decoder reads features[-1] (OS 16) and features[1] (stride 4).
  - RepVGG (any `net.RepVGG.VARIANTS` name): `build_repvgg(last_stride=1)`, OS 16 as in the classifier.
  - ResNet-50 (`resnet50`): torchvision's Bottleneck layout and parameter names, OS 16 by dilating
    layer4 (torchvision's replace_stride_with_dilation=[False, False, True]).
- ASPP: 1x1 + 3x3 at rates 6, 12, 18 + image pooling, 256 channels each with BN + ReLU, a 1x1
  projection with BN + ReLU and Dropout(0.5) (torchvision's DeepLabV3 ASPP).
- decoder: ASPP output upsampled to the stride-4 grid, concatenated with a 48-channel 1x1 projection
  of features[1], two 3x3 conv-BN-ReLU (256), a 1x1 classifier to 2 classes (background, building),
  bilinearly upsampled to the input size. Any input size works (odd ones too): every upsampling
  goes to an explicit size, never by a scale factor.

Checkpoints use net.checkpoints (network "DeepLabV3Plus"). Keys: `encoder.repvgg.<official RepVGG
names>` or `encoder.<torchvision ResNet names>`, then `decoder.*` and `head.*`.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc import fileio, imutils
from misc.errors import UserError
from misc.torchutils import autocast, iter_batches
from net import checkpoints
from net.RepVGG import VARIANTS, build_repvgg, load_backbone_weights, repvgg_model_convert

log = logging.getLogger(__name__)

NETWORK = "DeepLabV3Plus"
RESNET50 = "resnet50"
ENCODERS = (*VARIANTS, RESNET50)
ASPP_RATES = (6, 12, 18)

__all__ = ["NETWORK", "ENCODERS", "Bottleneck", "ResNet50Encoder", "RepVGGEncoder", "ASPP", "DeepLabV3PlusDecoder",
           "DeepLabV3Plus", "build_encoder", "check_backbone", "load_resnet_state_dict", "load_resnet_weights",
           "build_seg_net", "save_seg_net", "load_seg_net", "window_grid", "predict", "scene_logits", "export_onnx"]


# --- ResNet-50 with torchvision's names ---------------------------------------------------------------


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


class ResNet50Encoder(nn.Module):
    """ResNet-50 without its fc, OS 16: layer4 trades its stride for dilation 2, as torchvision's
    `resnet50(replace_stride_with_dilation=[False, False, True])` (its first block keeps dilation 1)."""

    out_channels: tuple[int, ...] = (64, 256, 512, 1024, 2048)  # stem, layer1..layer4: strides 2, 4, 8, 16, 16

    def __init__(self) -> None:
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

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [stem, f1, f2, f3, self.layer4(f3)]


def _resnet_hint(state: Mapping[str, torch.Tensor]) -> str:
    if any("rbr_dense" in k or "rbr_reparam" in k for k in state):
        return "it looks like a RepVGG checkpoint; pass its variant as --seg_backbone"
    if "layer3.6.conv1.weight" in state:
        return "it looks like a ResNet-101/152 checkpoint; only resnet50 is supported"
    if "layer1.0.conv2.weight" in state and "layer1.0.conv3.weight" not in state:
        return "it looks like a ResNet-18/34 (BasicBlock) checkpoint; only resnet50 is supported"
    return "expected torchvision's resnet50 ImageNet weights (e.g. resnet50-0676ba61.pth)"


def load_resnet_state_dict(encoder: ResNet50Encoder, state: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
    """Load torchvision-named ResNet-50 weights strictly. `fc.*` is dropped (the encoder has no fc)
    and missing `num_batches_tracked` buffers (absent from torchvision's files) keep their value."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = encoder.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        first = mismatched[0] if mismatched else None
        shape = f"{first} {tuple(state[first].shape)} vs {tuple(expected[first].shape)}" if first else "-"
        raise UserError(f"{source} does not match the resnet50 encoder: {len(missing)} missing keys (first: "
                        f"{missing[0] if missing else '-'}), {len(unexpected)} unexpected (first: "
                        f"{unexpected[0] if unexpected else '-'}), {len(mismatched)} mismatched shapes (first: {shape}); "
                        f"{_resnet_hint(state)}")
    full = {**{k: expected[k] for k in optional if k not in state}, **state}
    encoder.load_state_dict(full, strict=True)


_WARNED_MISSING: set[str] = set()


def load_resnet_weights(encoder: ResNet50Encoder, path: str | None) -> bool:
    """Load ImageNet weights if `path` exists (True); otherwise warn once per path and return False."""
    if not path or not os.path.isfile(path):
        if str(path) not in _WARNED_MISSING:
            _WARNED_MISSING.add(str(path))
            log.warning("%s not found: the resnet50 encoder starts from scratch (torchvision's ImageNet file, "
                        "e.g. resnet50-0676ba61.pth, can be given with --seg_weights)", path or "(no path given)")
        return False
    load_resnet_state_dict(encoder, fileio.read_state_dict(path, "torchvision's resnet50 ImageNet weights (--seg_weights)"), source=str(path))
    return True


# --- RepVGG encoder ---------------------------------------------------------------------------------


class RepVGGEncoder(nn.Module):
    """A RepVGG at OS 16 (the classifier's stage-4 stride drop); its unused ImageNet head is frozen."""

    def __init__(self, name: str, deploy: bool = False) -> None:
        super().__init__()
        self.repvgg = build_repvgg(name, deploy=deploy, last_stride=1)
        self.repvgg.linear.requires_grad_(False)  # loaded with the ImageNet file, never used (as in RepVGG_cam)
        self.out_channels = self.repvgg.out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.repvgg.forward_features(x)


def check_backbone(name: str, flag: str = "--seg_backbone") -> str:
    if name not in ENCODERS:
        raise UserError(f"unknown encoder {name!r} ({flag}); valid names: {', '.join(ENCODERS)}")
    return name


def build_encoder(name: str, deploy: bool = False) -> nn.Module:
    """`resnet50` or a RepVGG variant; `deploy` builds folded RepVGG blocks (ignored for ResNet-50)."""
    check_backbone(name)
    return ResNet50Encoder() if name == RESNET50 else RepVGGEncoder(name, deploy)


# --- ASPP and decoder -----------------------------------------------------------------------------


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class ASPPPooling(nn.Module):
    """Image-level branch: global average pool -> 1x1 conv-BN-ReLU -> broadcast back to the grid."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.project = conv_bn_relu(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.project(x.mean(dim=(2, 3), keepdim=True))   # [B, C, 1, 1]
        return pooled.expand(-1, -1, *x.shape[-2:])               # = bilinear upsampling of a 1x1 map


class ASPP(nn.Module):
    def __init__(self, in_ch: int, out_ch: int = 256, rates: tuple[int, ...] = ASPP_RATES, dropout: float = 0.5) -> None:
        super().__init__()
        branches = [conv_bn_relu(in_ch, out_ch, 1)] + [conv_bn_relu(in_ch, out_ch, 3, r) for r in rates]
        self.branches = nn.ModuleList([*branches, ASPPPooling(in_ch, out_ch)])
        self.project = nn.Sequential(conv_bn_relu(out_ch * len(self.branches), out_ch, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on features[-1] (OS 16), fused with a 48-channel projection of features[1] (stride 4)."""

    def __init__(self, encoder_channels: tuple[int, ...], channels: int = 256, low_channels: int = 48,
                 rates: tuple[int, ...] = ASPP_RATES) -> None:
        super().__init__()
        self.aspp = ASPP(encoder_channels[-1], channels, rates)
        self.low_proj = conv_bn_relu(encoder_channels[1], low_channels, 1)
        self.fuse = nn.Sequential(conv_bn_relu(channels + low_channels, channels, 3), conv_bn_relu(channels, channels, 3))
        self.out_channels = channels

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low = self.low_proj(features[1])                                           # [B, 48, H/4, W/4]
        high = F.interpolate(self.aspp(features[-1]), size=low.shape[-2:], mode="bilinear",
                             align_corners=False)                                  # [B, 256, H/4, W/4]
        return self.fuse(torch.cat([high, low], dim=1))                            # [B, 256, H/4, W/4]


class DeepLabV3Plus(nn.Module):
    """encoder -> decoder -> 1x1 head -> logits [B, num_classes, H, W] at the input size."""

    def __init__(self, backbone: str = "RepVGG-B1g2", deploy: bool = False, num_classes: int = 2) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.encoder = build_encoder(backbone, deploy)
        self.decoder = DeepLabV3PlusDecoder(tuple(self.encoder.out_channels))
        self.head = nn.Conv2d(self.decoder.out_channels, num_classes, 1)
        for m in self.decoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.decoder(self.encoder(x)))
        # align_corners=False: torchvision's DeepLab heads (SMP and the TF reference use True)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(encoder parameters, decoder + head parameters); the second group trains at 10x lr."""
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        return encoder, [*self.decoder.parameters(), *self.head.parameters()]


def build_seg_net(backbone: str, weights: str | None) -> DeepLabV3Plus:
    """A train-time DeepLabV3+; its encoder starts from ImageNet weights when the file exists
    (otherwise from scratch, with one warning)."""
    model = DeepLabV3Plus(backbone)
    if backbone == RESNET50:
        load_resnet_weights(model.encoder, weights)
    else:
        load_backbone_weights(model.encoder.repvgg, weights, backbone)
    return model


def save_seg_net(model: DeepLabV3Plus, path: str | os.PathLike, extra: dict | None = None) -> None:
    checkpoints.save_net(model, NETWORK, path, deploy=False, extra=extra)


def load_seg_net(path: str | os.PathLike, device: torch.device | str = "cpu", convert: bool = True) -> DeepLabV3Plus:
    """Load a `save_seg_net` file strictly, in eval mode; `convert` folds the RepVGG blocks for inference."""
    model = checkpoints.load_net(path, NETWORK, DeepLabV3Plus, deploy=False, device="cpu", fix="--train_seg_pass True")
    if convert:
        repvgg_model_convert(model)  # no-op for ResNet-50
    return model.to(device).eval()


# --- prediction: sliding windows + flip, averaged over scales ------------------------------------


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one axis covering [0, size); the last window is shifted inward to end at size."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


@torch.no_grad()
def flip_logits(model: nn.Module, x: torch.Tensor, amp: str = "none") -> torch.Tensor:
    """Mean of the logits of x [B, 3, h, w] and of its horizontal flip, flipped back: [B, C, h, w] float32."""
    with autocast(x.device, amp):
        logits = model(torch.cat([x, x.flip(-1)])).float()
    return (logits[: len(x)] + logits[len(x):].flip(-1)) / 2


def window_grid(height: int, width: int, window: int, overlap: float) -> tuple[list[int], list[int], int, int]:
    """(row starts, column starts, window height, window width) of the sliding windows over an image.

    The one definition of the grid: `predict` (whole image in memory) and `scene_logits` (by blocks) use it,
    so both see the same windows."""
    stride = max(1, int(round(window * (1 - overlap))))
    return (window_starts(height, window, stride), window_starts(width, window, stride),
            min(window, height), min(window, width))


@torch.no_grad()
def sliding_window_logits(model: nn.Module, x: torch.Tensor, window: int, overlap: float, batch: int = 8,
                          device: torch.device | str = "cpu", amp: str = "none") -> torch.Tensor:
    """Logits [C, H, W] (on the CPU) of one normalised image x [3, H, W], averaged over overlapping windows."""
    height, width = x.shape[-2:]
    rows, cols, wh, ww = window_grid(height, width, window, overlap)
    boxes = [(t, l) for t in rows for l in cols]
    total = count = None
    for chunk in iter_batches(boxes, max(1, batch)):
        crops = torch.stack([x[:, t:t + wh, l:l + ww] for t, l in chunk]).to(device)
        logits = flip_logits(model, crops, amp).cpu()                                  # [b, C, wh, ww]
        if total is None:
            total, count = torch.zeros(logits.shape[1], height, width), torch.zeros(1, height, width)
        for (t, l), lg in zip(chunk, logits):
            total[:, t:t + wh, l:l + ww] += lg
            count[:, t:t + wh, l:l + ww] += 1
    return total / count


@torch.no_grad()
def predict(model: nn.Module, image: np.ndarray, window: int = 256, overlap: float = 0.25,
            scales: Sequence[float] = (1.0,), batch: int = 8, device: torch.device | str = "cpu",
            amp: str = "none") -> torch.Tensor:
    """Logits [C, H, W] (CPU, float32) of an HxWx3 uint8 image: sliding window + flip, averaged over scales."""
    x = torch.from_numpy(imutils.hwc_to_chw(imutils.normalize(image)))
    size = x.shape[-2:]
    total = None
    for scale in scales:
        scaled = x
        if scale != 1.0:
            scaled_size = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
            scaled = F.interpolate(x[None], size=scaled_size, mode="bilinear", align_corners=False)[0]
        logits = sliding_window_logits(model, scaled, window, overlap, batch, device, amp)
        if scale != 1.0:
            logits = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
        total = logits if total is None else total + logits
    return total / len(scales)


# --- prediction of scenes larger than memory -------------------------------------------------------

SCENE_BAND = 4096  # columns predicted together by scene_logits (a multiple of the output's 512-pixel blocks)


@torch.no_grad()
def window_logits(model: nn.Module, crops: torch.Tensor, scales: Sequence[float] = (1.0,),
                  device: torch.device | str = "cpu", amp: str = "none") -> torch.Tensor:
    """Flip-averaged logits [B, C, h, w] (CPU) of normalised crops [B, 3, h, w], averaged over `scales`;
    each crop is resized by a scale, predicted and resized back (bilinear)."""
    size, crops = crops.shape[-2:], crops.to(device)
    total = None
    for scale in scales:
        x = crops
        if scale != 1.0:
            x = F.interpolate(crops, size=(max(1, round(size[0] * scale)), max(1, round(size[1] * scale))),
                              mode="bilinear", align_corners=False)
        logits = flip_logits(model, x, amp)
        if scale != 1.0:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        total = logits if total is None else total + logits
    return (total / len(scales)).cpu()


@torch.no_grad()
def scene_logits(model: nn.Module, read: Callable[[int, int, int, int], np.ndarray], height: int, width: int,
                 window: int = 256, overlap: float = 0.25, scales: Sequence[float] = (1.0,), batch: int = 8,
                 device: torch.device | str = "cpu", amp: str = "none",
                 band: int = SCENE_BAND) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Logits of a height x width scene that need not fit in memory, as blocks (row, col, logits [C, h, w]).

    `read(r0, r1, c0, c1)` returns that part of the scene as uint8 HxWx3. The windows are those of
    `window_grid` over the whole scene and overlapping logits are averaged as in `predict`, so at scale 1
    the blocks equal `predict` of the whole image. The scene is done in vertical bands of `band` columns
    and, within a band, one row of windows at a time; rows are yielded as soon as no later window covers
    them. Memory: one band of (window + stride) rows of logits, whatever the scene's size. Windows that
    straddle a band edge are predicted for both bands (about window / band extra work).
    Scales other than 1 resize each window (`window_logits`), not the whole image as `predict` does.
    """
    rows, cols, wh, ww = window_grid(height, width, window, overlap)
    band = max(band, ww)
    for b0 in range(0, width, band):
        b1 = min(width, b0 + band)
        starts = [c for c in cols if c < b1 and c + ww > b0]
        s0, s1 = starts[0], starts[-1] + ww                   # the columns this band's windows read
        span, classes = s1 - s0, model_classes(model)
        total, count, top = torch.zeros(classes, 0, span), torch.zeros(1, 0, span), 0  # rows [top, top + len)
        for i, t in enumerate(rows):
            x = torch.from_numpy(imutils.hwc_to_chw(imutils.normalize(read(t, t + wh, s0, s1))))  # [3, wh, span]
            grow = t + wh - top - total.shape[1]
            if grow > 0:
                total = torch.cat([total, torch.zeros(classes, grow, span)], dim=1)
                count = torch.cat([count, torch.zeros(1, grow, span)], dim=1)
            for chunk in iter_batches(starts, max(1, batch)):
                crops = torch.stack([x[:, :, c - s0:c - s0 + ww] for c in chunk])
                for c, lg in zip(chunk, window_logits(model, crops, scales, device, amp)):
                    total[:, t - top:t - top + wh, c - s0:c - s0 + ww] += lg
                    count[:, t - top:t - top + wh, c - s0:c - s0 + ww] += 1
            done = (rows[i + 1] if i + 1 < len(rows) else height) - top  # rows no later window reaches
            if done > 0:
                yield top, b0, total[:, :done, b0 - s0:b1 - s0] / count[:, :done, b0 - s0:b1 - s0]
                total, count, top = total[:, done:].clone(), count[:, done:].clone(), top + done


def model_classes(model: nn.Module) -> int:
    return int(getattr(model, "num_classes", 2))


# --- ONNX export ----------------------------------------------------------------------------------

ONNX_OPSET = 17  # onnxruntime 1.16 and later run it


def export_onnx(model: nn.Module, path: str | os.PathLike, size: int = 256, opset: int = ONNX_OPSET) -> None:
    """Write `model` (eval mode, RepVGG blocks folded) as ONNX: input "image" float32 [N, 3, H, W] normalised
    as `misc.imutils.normalize` does, output "logits" float32 [N, C, H, W]; N, H and W dynamic."""
    import warnings

    model = model.cpu().eval()
    example = torch.zeros(1, 3, size, size)
    axes = {0: "N", 2: "H", 3: "W"}
    with warnings.catch_warnings():
        # the TorchScript exporter: the export-based one needs onnxscript and gives the same graph here
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(model, (example,), str(path), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": axes, "logits": axes}, opset_version=opset, dynamo=False)
