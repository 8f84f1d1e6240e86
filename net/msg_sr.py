"""The MSG-SR-Net baseline classifier (S1 and S2 variant B), with the fixes that let it train and make maps.

A comparison baseline (`--cam_network msg`), never on the default path: the classifier's backbone at output
stride 16, a "CG unit" (1x1 convolution with bias, batch norm, ReLU) on each of stages 1-4 (strides 4, 8, 16, 16), and on each level
GAP and a bias-free 1x1 classifier with TWO outputs (no building, building). The release's one-logit heads
made its cross-entropy fail for positives and vanish for negatives; two channels (as in the reference's ResNet version) fix that.
Loss: 0.3 (L1 + L2 + L3) + L4 with cross-entropy on the image label. Its maps weight the levels
(1/3, 1/3, 1/3, 1) after normalising each by its maximum.

Checkpoints use the format of `net.checkpoints` with network "RepVGG_MSG_SR" (its id since before this
module was renamed) and are train-time only (the MSG maps are made from the training-time network, with no
deploy step), under a name of their own
(--msg_weights_name), so they never replace the single-head classifier that BAC needs.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc.camutils import max_normalise, merge_flips, stack_pyramids, upsample_crop
from misc.torchutils import autocast
from net.backbones import BackboneNet

LOSS_WEIGHTS = (0.3, 0.3, 0.3, 1.0)   # stages 1-4, the reference's loss weights
MAP_WEIGHTS = (1 / 3, 1 / 3, 1 / 3, 1.0)  # stages 1-4, the reference's map weights
BUILDING = 1                          # channel of the building class in every head


def _cg_unit(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 1, bias=True), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class Net(BackboneNet):
    NETWORK = "RepVGG_MSG_SR"  # the id in its checkpoints: never renamed, so older files load
    REMAKE = "--train_cam_pass True --cam_network msg"

    def __init__(self, backbone: str = "RepVGG-B1g2") -> None:
        super().__init__(backbone)
        channels = self.backbone.feature_channels   # levels 1-4: strides 4, 8, 16, 16
        self.cg = nn.ModuleList(_cg_unit(c) for c in channels)
        self.heads = nn.ModuleList(nn.Conv2d(c, 2, 1, bias=False) for c in channels)

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """CG-unit outputs g_1..g_4 of stages 1-4 [B, C_i, H/s_i, W/s_i], s = 4, 8, 16, 16 (stage 0 runs too)."""
        stages = self.backbone.forward_features(x)
        return [cg(f) for cg, f in zip(self.cg, stages)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits [B, 2] of the four levels: W_i . GAP(g_i)."""
        return [head(g.mean(dim=(2, 3), keepdim=True)).flatten(1) for head, g in zip(self.heads, self.levels(x))]

    def cams(self, x: torch.Tensor) -> list[torch.Tensor]:
        """ReLU(W_i * g_i): the two-channel activation maps [B, 2, h_i, w_i] of the four levels."""
        return [F.relu(head(g)) for head, g in zip(self.heads, self.levels(x))]

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.cg.parameters(), *self.heads.parameters()]


def msg_loss(logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """0.3 (L1 + L2 + L3) + L4, L_i the cross-entropy of level i against the image label {0, 1} [B] or [B, 1]."""
    target = labels.reshape(-1).long()
    return sum(w * F.cross_entropy(z.float(), target) for w, z in zip(LOSS_WEIGHTS, logits))


def msg_batch_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """The MSG baseline's multi-level cross-entropy, 0.3 (L1 + L2 + L3) + L4."""
    return msg_loss(model(batch["img"]), batch["label"])


@torch.no_grad()
def multiscale_msg_cam(model: Net, packs: list[dict], device: torch.device, amp: str = "none"
                       ) -> torch.Tensor:
    """MSG baseline maps of B same-size tiles: high_res [B, 1, H, W], max-normalised with eps 1e-5."""
    size = tuple(int(v) for v in packs[0]["size"])
    high_res = torch.zeros(len(packs), 1, *size, device=device)
    for s in range(len(packs[0]["img"])):
        x = stack_pyramids(packs, s).to(device)
        with autocast(device, amp):
            levels = model.cams(x)
        for weight, cams in zip(MAP_WEIGHTS, levels):
            building = merge_flips(cams.float())[:, BUILDING:BUILDING + 1]
            high_res += weight * max_normalise(upsample_crop(building, size))
    return max_normalise(high_res)
