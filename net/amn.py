"""The activation-refinement (AR) network of BAC-AR-Net (S6, S6d, S7): AMN on any registered backbone.

Stage-4 features (OS 16) are scaled channel-wise by a linear encoding of the image label, then
Dropout(0.1) and a four-rate ASPP (3x3, dilations 6/12/18/24, N(0, 0.01) weights, zero biases)
summed into two logits (background, building).
Checkpoints use net.checkpoints (network "RepVGG_amn", its id since before this module was renamed).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc.augment import mean_over_views
from misc.camutils import max_normalise, stack_pyramids
from misc.torchutils import autocast
from net.backbones import BackboneNet


class ASPPSum(nn.Module):
    """Parallel dilated 3x3 convolutions to `num_classes` channels, summed (AMN's classifier head)."""

    def __init__(self, in_channels: int, num_classes: int = 2, rates: tuple[int, ...] = (6, 12, 18, 24)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates)
        for conv in self.branches:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


class Net(BackboneNet):
    NETWORK = "RepVGG_amn"  # the id in its checkpoints: never renamed, so older files load
    REMAKE = "--train_amn_pass True"

    def __init__(self, backbone: str = "RepVGG-B1g2") -> None:
        super().__init__(backbone)
        channels = self.backbone.feature_channels[-1]
        self.label_enc = nn.Linear(1, channels)
        self.classifier = nn.Sequential(nn.Dropout(0.1), ASPPSum(channels, 2))

    def forward(self, x: torch.Tensor, label_cls: torch.Tensor) -> torch.Tensor:
        """Logits [B, 2, H/16, W/16] of images x [B, 3, H, W] with image labels [B, 1]."""
        feats = self.backbone.forward_features(x)[-1]
        scale = self.label_enc(label_cls.to(feats.dtype))[:, :, None, None]
        return self.classifier(feats * scale)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.classifier.parameters()) + list(self.label_enc.parameters())


@torch.no_grad()
def multiscale_probs(model: Net, packs: list[dict], size: tuple[int, int], device: torch.device,
                     amp: str = "none", views: str = "flip") -> torch.Tensor:
    """softmax of the logits averaged over scales and views, resized to `size`: [B, 2, *size]. `views` "flip"
    (the reference): each image and its mirror; "dihedral": both at each of the four 90-degree rotations, each
    prediction turned back (misc.augment.mean_over_views)."""
    labels = torch.ones(2 * len(packs), 1, device=device)  # positives only, each view with its mirror

    def logits_of(batch: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            return model(batch, labels).float()

    total = torch.zeros(len(packs), 2, *size, device=device)
    num_scales = len(packs[0]["img"])
    for s in range(num_scales):
        images = stack_pyramids(packs, s)[0::2].to(device)  # the pyramid interleaves each image with its mirror
        logits = mean_over_views(logits_of, images, views)
        total += F.interpolate(logits, size, mode="bilinear", align_corners=False)
    return torch.softmax(total / num_scales, dim=1)


def mix_bac(maps: torch.Tensor, bac: torch.Tensor, weight: float) -> torch.Tensor:
    """AR maps [2, H, W] (background, building) mixed with the BAC building map [H, W] that their labels came
    from: building (1 - w) AR + w BAC, background (1 - w) AR + w (1 - BAC). w = 0 returns the AR maps."""
    if weight == 0:
        return maps
    bac = bac.to(maps.dtype)
    return torch.stack([(1 - weight) * maps[0] + weight * (1 - bac), (1 - weight) * maps[1] + weight * bac])


def gate_by_labels(probs: torch.Tensor, ir_label: torch.Tensor) -> torch.Tensor:
    """Keep P on confident background (label 0), use the max-normalised P~ elsewhere. probs [2,H,W], label [H,W]."""
    return torch.where(ir_label[None] == 0, probs, max_normalise(probs))
