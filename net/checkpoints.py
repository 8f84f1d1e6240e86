"""The one checkpoint format of the project's networks, {"network", "backbone", "deploy", "model", ...},
and the four things every network does with it: build (with ImageNet weights), save, load, deploy.

Each network is a `net.backbones.BackboneNet` subclass naming its checkpoint id (`NETWORK`) and the flags
that remake its weights (`REMAKE`); these functions take the class, so no network has wrappers of its own.
Later stages build the right backbone from the file itself; loading is strict and every mismatch ends in
one line naming the file and the stage that rewrites it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import torch

from misc import fileio
from misc.errors import UserError
from net.backbones import BackboneNet, load_pretrained, reparameterize

NetT = TypeVar("NetT", bound=BackboneNet)


def build_net(net: type[NetT], backbone: str, weights: str | None) -> NetT:
    """A train-time network whose backbone holds ImageNet weights when the file `weights` exists (else from
    scratch, warned once; "" is the user's `none`, from scratch without a warning)."""
    model = net(backbone)
    load_pretrained(model.pretrained, backbone, weights)
    return model


def save_net(model: BackboneNet, path: str | os.PathLike, deploy: bool = False, extra: dict | None = None) -> None:
    fileio.save_torch(path, {"network": model.NETWORK, "backbone": model.backbone_name, "deploy": deploy,
                             "model": model.state_dict(), **(extra or {})})


def load_net(net: type[NetT], path: str | os.PathLike, deploy: bool = False, device: torch.device | str = "cpu",
             fold: bool = False) -> NetT:
    """Load a `save_net` file of `net` strictly, in eval mode on `device`. `deploy`: the file holds the folded
    network (`deploy_net`); `fold`: fold a train-time file after loading it, for inference."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{net.NETWORK} weights {path} do not exist; run {net.REMAKE} first or fix the weights-name flag")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"{path} is not a readable checkpoint ({fileio.load_error_reason(err)}); "
                        f"delete it and rerun {net.REMAKE}") from None
    if not isinstance(ckpt, dict) or ckpt.get("network") != net.NETWORK or ckpt.get("deploy") != deploy:
        kind = "a deploy" if deploy else "a train-time"
        raise UserError(f"{path} is not {kind} {net.NETWORK} checkpoint written by this project; rerun {net.REMAKE}")
    model = net(ckpt["backbone"])
    if deploy:  # the folded blocks' keys (rbr_reparam), the same geometry as folding after training
        reparameterize(model)
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise UserError(f"{path} does not match {net.NETWORK}({ckpt['backbone']}, deploy={deploy}): "
                        f"{lines[1] if len(lines) > 1 else lines[0]}; rerun {net.REMAKE}") from None
    if fold:
        reparameterize(model)
    return model.to(device).eval()


def deploy_net(net: type[BackboneNet], train_path: str | os.PathLike, deploy_path: str | os.PathLike) -> None:
    """S1d / S6d: fold every re-parameterisable block of a trained network and save the deploy file."""
    model = load_net(net, train_path, deploy=False, device="cpu", fold=True)
    save_net(model, deploy_path, deploy=True)
