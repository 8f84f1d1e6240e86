"""The optional IRN network (S10): a frozen backbone (any registered one), a boundary branch and IRN's
displacement branch, plus AffinityDisplacementLoss.

Backbone features (`--backbone`, ImageNet weights from --MODEL_WEIGHTS when present) are taken with
no gradient and the backbone always runs in eval mode, so its batch-norm statistics stay put.
The stride drop is on the LAST level (output stride 16), so x1..x4 sit at /4, /8, /16, /16 as in IRN;
the RepVGG release put it on stage3, which left x3 at /8 and cropped the wrong (top-left) quadrant.

- Boundary branch (IRN's simple form; the GSCNN gating of the release is left out): a 1x1 conv +
  GroupNorm + ReLU to 32 channels on each of x1..x4, upsampled to /4, concatenated, a 1x1 conv to
  one edge logit at /4.
- Displacement branch (IRN's, on four features instead of five): 1x1 conv blocks on x1..x4, x3 and
  x4 fused at /16 and upsampled to /8, fused with x2, upsampled to /4, fused with x1, then 2 channels.
- `mean_shift.running_mean` holds the mean displacement over --infer_list, subtracted in eval mode.

Checkpoints use net.checkpoints ({"network": "RepVGG_irn", "backbone", "deploy": False, "model"}; the id
it had before this module was renamed).
"""
from __future__ import annotations

import logging
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc import indexing
from misc.errors import UserError
from net import amn, checkpoints
from net.backbones import BackboneNet, load_pretrained

log = logging.getLogger(__name__)
EDGE_CHANNELS = 32


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv (no bias) + GroupNorm(4) + ReLU: IRN's building block for both branches."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.GroupNorm(4, out_channels), nn.ReLU(inplace=True))


def _upsample(x: torch.Tensor, factor: int, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear x`factor` (align_corners=False, as IRN) then crop to `size`, so pixel centres stay aligned
    when the input side is not a multiple of 16 (a resize straight to `size` would stretch instead)."""
    if factor > 1:
        x = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    return x[..., : size[0], : size[1]]


class MeanShift(nn.Module):
    """Subtracts `running_mean` (the training-set mean displacement) in eval mode only."""

    def __init__(self, num_features: int = 2) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x
        return x - self.running_mean.view(1, -1, 1, 1).to(x.dtype)


class Net(BackboneNet):
    NETWORK = "RepVGG_irn"  # the id in its checkpoints: never renamed, so older files load
    REMAKE = "--train_irn_pass True"

    def __init__(self, backbone: str = "RepVGG-B1g2") -> None:
        super().__init__(backbone)  # output stride 16: x3 and x4 both at /16, as in IRN
        self.backbone.requires_grad_(False)
        c1, c2, c3, c4 = self.backbone.feature_channels
        self.edge_sides = nn.ModuleList(_block(c, EDGE_CHANNELS) for c in (c1, c2, c3, c4))
        self.edge_fuse = nn.Conv2d(4 * EDGE_CHANNELS, 1, 1, bias=True)
        self.dp1, self.dp2, self.dp3, self.dp4 = _block(c1, 64), _block(c2, 128), _block(c3, 256), _block(c4, 256)
        self.dp_deep = _block(512, 256)        # x3 + x4 at /16
        self.dp_mid = _block(128 + 256, 256)   # + x2 at /8
        self.dp_out = nn.Sequential(_block(64 + 256, 256), nn.Conv2d(256, 2, 1, bias=True))  # + x1 at /4
        self.mean_shift = MeanShift(2)

    def train(self, mode: bool = True) -> "Net":
        """The heads follow `mode`; the frozen backbone stays in eval mode (trainloop.fit calls train())."""
        super().train(mode)
        self.backbone.train(False)
        return self

    def backbone_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[x1, x2, x3, x4] at /4, /8, /16, /16, detached (the backbone is not trained)."""
        with torch.no_grad():
            features = self.backbone.forward_features(x)
        return [f.detach() for f in features]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Edge logits [B, 1, h, w] and displacements [B, 2, h, w] (dy, dx) at h = ceil(H/4), w = ceil(W/4)."""
        features = self.backbone_features(x)
        return self._edge(features), self._displacement(features)

    def edges(self, x: torch.Tensor) -> torch.Tensor:
        """Edge logits alone (the random walk needs no displacement)."""
        return self._edge(self.backbone_features(x))

    def displacements(self, x: torch.Tensor) -> torch.Tensor:
        """Displacements alone (the mean shift needs no edges)."""
        return self._displacement(self.backbone_features(x))

    def _edge(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        sides = [_upsample(side(f), k, size) for side, f, k in zip(self.edge_sides, features, (1, 2, 4, 4))]
        return self.edge_fuse(torch.cat(sides, dim=1))

    def _displacement(self, features: list[torch.Tensor]) -> torch.Tensor:
        x1, x2, x3, x4 = features
        size = x1.shape[-2:]
        deep = self.dp_deep(torch.cat([self.dp3(x3), self.dp4(x4)], dim=1))
        mid = self.dp_mid(torch.cat([self.dp2(x2), _upsample(deep, 2, x2.shape[-2:])], dim=1))
        dp = self.dp_out(torch.cat([self.dp1(x1), _upsample(mid, 2, size)], dim=1))
        return self.mean_shift(dp)

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(boundary-branch parameters, displacement-branch parameters); the second trains at 10x lr."""
        edge = list(self.edge_sides.parameters()) + list(self.edge_fuse.parameters())
        dp = [p for m in (self.dp1, self.dp2, self.dp3, self.dp4, self.dp_deep, self.dp_mid, self.dp_out)
              for p in m.parameters()]
        return edge, dp


class AffinityDisplacementLoss(nn.Module):
    """IRN's losses on pairs of radius `radius` (the reference: 5; IRN: 10) from stride-4 labels {0, 1, 255}.

    a = 1 - max_path sigmoid(edge); pos = 1/2 mean_bg+(-log(a + 1e-5)) + 1/2 mean_fg+(-log(a + 1e-5));
    neg = mean_neg(-log(1 + 1e-5 - a)); dp_fg = sum_fg+ |d_i - d_j - (p_j - p_i)|_1 / (2 sum fg+);
    dp_bg = sum_bg+ |d_i - d_j|_1 / (2 sum bg+). The 1e-5 in every denominator keeps a batch without
    some kind of pair finite (that term is then 0).
    """

    def __init__(self, radius: int = 5) -> None:
        super().__init__()
        self.path_index = indexing.PathIndex(radius)

    def forward(self, edge_logits: torch.Tensor, displacement: torch.Tensor,
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """edge_logits [B, 1, H, W], displacement [B, 2, H, W], labels [B, H, W] -> the four terms."""
        index = self.path_index
        pairs = indexing.pair_labels(labels, index)
        aff = indexing.edge_to_affinity(torch.sigmoid(edge_logits.float()[:, 0]), index)
        pos_loss = -torch.log(aff + 1e-5)
        neg_loss = -torch.log(1 + 1e-5 - aff)
        # delta_i - delta_j - (p_j - p_i) = -(delta_j - delta_i + (p_j - p_i)); the sign goes in the abs
        disp = indexing.displacement_pairs(displacement.float(), index)
        fg_error = (disp + indexing.direction_offsets(index, disp.device)).abs()
        bg_error = disp.abs()
        bg, fg, neg = pairs["bg_pos"], pairs["fg_pos"], pairs["neg"]
        return {
            "pos": _masked_mean(pos_loss, bg) / 2 + _masked_mean(pos_loss, fg) / 2,
            "neg": _masked_mean(neg_loss, neg),
            "dp_fg": (fg_error * fg.unsqueeze(1)).sum() / (2 * fg.sum() + 1e-5),
            "dp_bg": (bg_error * bg.unsqueeze(1)).sum() / (2 * bg.sum() + 1e-5),
        }


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / (mask.sum() + 1e-5)


def total_loss(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """L = (pos + neg) / 2 + (dp_fg + dp_bg) / 2, as in IRN."""
    return (terms["pos"] + terms["neg"]) / 2 + (terms["dp_fg"] + terms["dp_bg"]) / 2


@torch.no_grad()
def edge_map(model: Net, pair: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Edge probability [h, w] of one tile given as [image, flipped image] [2, 3, H, W]: the sigmoid of the
    mean of the two logits, the flipped one flipped back.

    Inputs are zero-padded (the mean colour, as the training crops) on the bottom and right to at least
    `crop_size` (--irn_crop_size; the release hard-coded 256) and to a multiple of 16.
    """
    padded, (h, w) = _pad_pair(pair, crop_size)
    return _flip_averaged_edge(model.edges(padded), h, w)


@torch.no_grad()
def displacement_map(model: Net, pair: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Displacement [2, h, w] of the unflipped image of `pair` (a flip would negate its dx), padded as in
    `edge_map`."""
    padded, (h, w) = _pad_pair(pair[:1], crop_size)
    return model.displacements(padded)[0, :, :h, :w].float()


def _pad_pair(pair: torch.Tensor, crop_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The padded pair and the tile's stride-4 grid (h, w) = (ceil(H/4), ceil(W/4))."""
    height, width = pair.shape[-2:]
    pad_h = max(crop_size, 16 * math.ceil(height / 16)) - height
    pad_w = max(crop_size, 16 * math.ceil(width / 16)) - width
    return F.pad(pair, (0, pad_w, 0, pad_h)), (math.ceil(height / 4), math.ceil(width / 4))


def _flip_averaged_edge(edge: torch.Tensor, h: int, w: int) -> torch.Tensor:
    # crop before flipping back: the flipped tile, too, sits at the top left of its padded input
    edge = edge[..., :h, :w].float()
    return torch.sigmoid(edge[0, 0] / 2 + edge[1, 0].flip(-1) / 2)


def build_irn_net(backbone: str, weights: str | None, fallback: str | os.PathLike | None = None) -> Net:
    """A new IRN network whose frozen backbone holds ImageNet weights when the file exists, else the
    backbone of the trained AR network `fallback` (<amn_weights_name>.pth) when that exists.

    Why the fallback: the backbone is frozen, so without ImageNet weights it would stay random and the
    boundary branch would see no useful features; the AR network's backbone was trained on these tiles.
    """
    model = Net(backbone)
    if load_pretrained(model.backbone, backbone, weights) or fallback is None or not os.path.isfile(fallback):
        return model
    ar_net = checkpoints.load_net(amn.Net, fallback)  # one-line errors for a wrong or damaged file
    if ar_net.backbone_name != backbone:
        raise UserError(f"{fallback} is not a train-time {backbone} AR checkpoint but a {ar_net.backbone_name} one; "
                        f"rerun --train_amn_pass True with --amn_backbone {backbone}")
    model.backbone.load_state_dict(ar_net.backbone.state_dict(), strict=True)
    log.info("IRN backbone: no ImageNet weights, so the frozen %s backbone comes from the AR network %s",
             backbone, fallback)
    return model
