"""The BAC-AR-Net single-head classifier (S1, S1d, S2 variant A): RepVGG at output stride 16,
GAP and a bias-free 1x1 convolution to one building logit.

Checkpoints are dicts {"network", "backbone", "deploy", "model": state_dict}, so later stages build
the right backbone from the file itself. The model keys are `repvgg.*` (the official RepVGG names,
as in DingXiaoH/RepVGG) and `classifier.weight`.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc.camutils import max_normalise, merge_flips, stack_pyramids, strided_size, upsample_crop
from misc.torchutils import autocast
from net import checkpoints
from net.backbones import build_backbone, load_pretrained

NETWORK = "RepVGG_cam"


class Net(nn.Module):
    def __init__(self, backbone: str = "RepVGG-B1g2", deploy: bool = False) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.backbone = build_backbone(backbone, output_stride=16, deploy=deploy)
        self.classifier = nn.Conv2d(self.backbone.feature_channels[-1], 1, 1, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Stage-4 features [B, C, H/16, W/16], post-ReLU."""
        return self.backbone.forward_features(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Building logit [B, 1] = w . GAP(f)."""
        pooled = self.features(x).mean(dim=(2, 3), keepdim=True)
        return self.classifier(pooled).flatten(1)

    def cam(self, feats: torch.Tensor) -> torch.Tensor:
        """ReLU(w * f): the class activation map [B, 1, h, w] of stage-4 features."""
        return F.relu(F.conv2d(feats, self.classifier.weight))

    @property
    def classifier_weight(self) -> torch.Tensor:
        """w as a vector [C]: S3b scores a prototype c by sigmoid(w.c)."""
        return self.classifier.weight.detach().flatten()

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, new-layer parameters); the second group trains at 10x lr."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return backbone, list(self.classifier.parameters())


def build_cam_net(backbone: str, weights: str | None) -> Net:
    """A train-time classifier with ImageNet weights when the file exists (else from scratch, warned once)."""
    model = Net(backbone)
    load_pretrained(model.backbone, backbone, weights)
    return model


def save_cam_net(model: Net, path: str | os.PathLike, deploy: bool, extra: dict | None = None) -> None:
    checkpoints.save_net(model, NETWORK, path, deploy, extra)


def load_cam_net(path: str | os.PathLike, deploy: bool, device: torch.device | str = "cpu") -> Net:
    """Load a checkpoint written by `save_cam_net` (strict), in eval mode on `device`."""
    return checkpoints.load_net(path, NETWORK, Net, deploy, device, fix="--train_cam_pass True")


def deploy_cam_net(train_path: str | os.PathLike, deploy_path: str | os.PathLike) -> None:
    """Fold every RepVGG block of the trained classifier and save it as the deploy file (S1d)."""
    checkpoints.deploy_net(train_path, deploy_path, NETWORK, Net, fix="--train_cam_pass True")


@torch.no_grad()
def multiscale_cam(model: Net, packs: list[dict], device: torch.device, amp: str = "none"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed CAMs of B same-size tiles: (high_res [B, 1, H, W], cam [B, 1, ceil(H/4), ceil(W/4)]), both
    max-normalised with eps 1e-5."""
    size = tuple(int(v) for v in packs[0]["size"])
    size4 = strided_size(size, 4)
    high_res = torch.zeros(len(packs), 1, *size, device=device)
    stride4 = torch.zeros(len(packs), 1, *size4, device=device)
    for s in range(len(packs[0]["img"])):
        x = stack_pyramids(packs, s).to(device)
        with autocast(device, amp):
            cams = model.cam(model.features(x))
        cams = merge_flips(cams.float())
        high_res += upsample_crop(cams, size)
        stride4 += F.interpolate(cams, size4, mode="bilinear", align_corners=False)
    return max_normalise(high_res), max_normalise(stride4)
