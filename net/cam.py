"""The BAC-AR-Net single-head classifier (S1, S1d, S2 variant A, `--cam_network single`): any registered
backbone at output stride 16, GAP and a bias-free 1x1 convolution to one building logit.

Checkpoints use net.checkpoints (network "RepVGG_cam", its id since before this module was renamed);
the model keys are `backbone.<the backbone's own names>` and `classifier.weight`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc.camutils import max_normalise, merge_flips, stack_pyramids, strided_size, upsample_crop
from misc.torchutils import autocast
from net.backbones import BackboneNet


class Net(BackboneNet):
    NETWORK = "RepVGG_cam"  # the id in its checkpoints: never renamed, so older files load
    REMAKE = "--train_cam_pass True"

    def __init__(self, backbone: str = "RepVGG-B1g2") -> None:
        super().__init__(backbone)
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

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.classifier.parameters())


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
