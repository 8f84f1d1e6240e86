"""The one checkpoint format of the project's networks: {"network", "backbone", "deploy", "model", ...}.

Later stages build the right backbone from the file itself; loading is strict and every mismatch
ends in one line naming the file and the stage that rewrites it.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from misc import fileio
from misc.errors import UserError
from net.RepVGG import repvgg_model_convert


def save_net(model: nn.Module, network: str, path: str | os.PathLike, deploy: bool, extra: dict | None = None) -> None:
    fileio.save_torch(path, {"network": network, "backbone": model.backbone_name, "deploy": deploy,
                             "model": model.state_dict(), **(extra or {})})


def load_net(path: str | os.PathLike, network: str, build: Callable[[str, bool], nn.Module], deploy: bool,
             device: torch.device | str, fix: str) -> nn.Module:
    """Load a `save_net` file strictly into `build(backbone, deploy)`, in eval mode on `device`.
    `fix` is the flag that remakes the file, e.g. '--train_cam_pass True'."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{network} weights {path} do not exist; run {fix} first or fix the weights-name flag")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"{path} is not a readable checkpoint ({fileio.load_error_reason(err)}); "
                        f"delete it and rerun {fix}") from None
    if not isinstance(ckpt, dict) or ckpt.get("network") != network or ckpt.get("deploy") != deploy:
        kind = "a deploy" if deploy else "a train-time"
        raise UserError(f"{path} is not {kind} {network} checkpoint written by this project; rerun {fix}")
    model = build(ckpt["backbone"], deploy)
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise UserError(f"{path} does not match {network}({ckpt['backbone']}, deploy={deploy}): "
                        f"{lines[1] if len(lines) > 1 else lines[0]}; rerun {fix}") from None
    return model.to(device).eval()


def deploy_net(train_path: str | os.PathLike, deploy_path: str | os.PathLike, network: str,
               build: Callable[[str, bool], nn.Module], fix: str) -> None:
    """S1d / S6d: fold every RepVGG block of a trained network and save the deploy file."""
    model = load_net(train_path, network, build, deploy=False, device="cpu", fix=fix)
    repvgg_model_convert(model)
    save_net(model, network, deploy_path, deploy=True)
