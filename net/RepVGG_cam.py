"""The BAC-AR-Net classifier (SPEC S1 variant A, S1d, S2 variant A): RepVGG at output stride 16,
GAP and a bias-free 1x1 convolution to one building logit.

Checkpoints are dicts {"network", "backbone", "deploy", "model": state_dict}, so later stages build
the right backbone from the file itself. The model keys are `repvgg.*` (the official RepVGG names,
SPEC section 3) and `classifier.weight`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc import fileio
from misc.errors import UserError
from net.RepVGG import build_repvgg, load_backbone_weights, repvgg_model_convert

log = logging.getLogger(__name__)
NETWORK = "RepVGG_cam"


class Net(nn.Module):
    def __init__(self, backbone: str = "RepVGG-B1g2", deploy: bool = False) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.repvgg = build_repvgg(backbone, deploy=deploy, last_stride=1)  # OS 16 (SPEC section 3)
        self.classifier = nn.Conv2d(self.repvgg.out_channels[-1], 1, 1, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Stage-4 features [B, C, H/16, W/16], post-ReLU."""
        return self.repvgg.forward_features(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Building logit [B, 1] = w . GAP(f)."""
        pooled = self.features(x).mean(dim=(2, 3), keepdim=True)
        return self.classifier(pooled).flatten(1)

    def cam(self, feats: torch.Tensor) -> torch.Tensor:
        """ReLU(w * f): the class activation map [B, 1, h, w] of stage-4 features."""
        return F.relu(F.conv2d(feats, self.classifier.weight))

    @property
    def classifier_weight(self) -> torch.Tensor:
        """w as a vector [C] (the prototype scorer of SPEC S3b)."""
        return self.classifier.weight.detach().flatten()

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, new-layer parameters); the second group trains at 10x lr."""
        backbone = [p for n, p in self.repvgg.named_parameters() if not n.startswith("linear.")]
        return backbone, list(self.classifier.parameters())


def build_cam_net(backbone: str, weights: str | None) -> Net:
    """A train-time classifier with ImageNet weights when the file exists (else from scratch, warned once)."""
    model = Net(backbone)
    load_backbone_weights(model.repvgg, weights, backbone)
    return model


def save_cam_net(model: Net, path: str | os.PathLike, deploy: bool, extra: dict | None = None) -> None:
    fileio.save_torch(path, {"network": NETWORK, "backbone": model.backbone_name, "deploy": deploy,
                             "model": model.state_dict(), **(extra or {})})


def load_cam_net(path: str | os.PathLike, deploy: bool, device: torch.device | str = "cpu") -> Net:
    """Load a checkpoint written by `save_cam_net` (strict), in eval mode on `device`."""
    path = Path(path)
    if not path.is_file():
        hint = "run --deploy step (it runs at the end of --train_cam_pass)" if deploy else "run --train_cam_pass True first"
        raise UserError(f"classifier weights {path} do not exist; {hint} or fix --cam_weights_name")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"{path} is not a readable checkpoint ({err}); delete it and rerun --train_cam_pass True") from None
    if not isinstance(ckpt, dict) or ckpt.get("network") != NETWORK or ckpt.get("deploy") != deploy:
        kind = "a deploy" if deploy else "a train-time"
        raise UserError(f"{path} is not {kind} {NETWORK} checkpoint written by this project; rerun --train_cam_pass True")
    model = Net(ckpt["backbone"], deploy=deploy)
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise UserError(f"{path} does not match {NETWORK}({ckpt['backbone']}, deploy={deploy}): {first}") from None
    return model.to(device).eval()


def deploy_cam_net(train_path: str | os.PathLike, deploy_path: str | os.PathLike) -> None:
    """S1d: fold every RepVGG block of a trained classifier and save it as the deploy file."""
    model = load_cam_net(train_path, deploy=False)
    repvgg_model_convert(model)
    save_cam_net(model, deploy_path, deploy=True)
