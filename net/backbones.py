"""The backbone registry: every network (classifier, MSG-SR-Net, AR network, IRN, DeepLabV3+) builds its
feature extractor here by name, so `--backbone`, `--amn_backbone` and `--seg_backbone` accept every name.

A backbone is an nn.Module with
- `forward_features(x) -> [f1, f2, f3, f4]`: four levels at `feature_strides` (4, 8, 16 and the output
  stride) with `feature_channels` channels; its input is RGB normalised with the ImageNet mean and std (what
  voc12.dataloader gives) and a backbone that was trained on another normalisation converts it itself;
- its ImageNet classifier, if it has one, kept (so the ImageNet file loads strictly) but frozen;
- RepVGG only: blocks that `net.RepVGG.repvgg_model_convert` folds for deployment (a no-op elsewhere).
A family adds its constructor, its strict ImageNet loader and where its weights live. Adding a family is one
module plus one `_register` call below (docs/ARCHITECTURE.md, "Backbones").
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from misc.errors import UserError
from net import efficientnet_lite, resnet
from net.RepVGG import VARIANTS as REPVGG_VARIANTS, build_repvgg, load_imagenet_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    build: Callable[[str, int, bool], nn.Module]          # (name, output_stride, deploy)
    load_imagenet: Callable[[nn.Module, Path], None]      # strict; one-line UserError on a wrong file
    default_weights: Callable[[str], Path | None]         # where the ImageNet file is expected


def _build_repvgg(name: str, output_stride: int, deploy: bool) -> nn.Module:
    if output_stride not in (16, 32):
        raise ValueError(f"{name} is built at output stride 16 or 32, not {output_stride}")
    model = build_repvgg(name, deploy=deploy, last_stride=1 if output_stride == 16 else 2)
    model.linear.requires_grad_(False)  # the ImageNet head: loaded with the file, never used
    return model


def _build_lite(name: str, output_stride: int, deploy: bool) -> nn.Module:
    model = efficientnet_lite.EfficientNetLite(name, output_stride)
    model._fc.requires_grad_(False)  # the ImageNet head: loaded with the file, never used
    return model


REPVGG = Family(build=_build_repvgg, load_imagenet=load_imagenet_weights,
                default_weights=lambda name: Path("weights") / f"{name}-train.pth")
EFFICIENTNET_LITE = Family(build=_build_lite, load_imagenet=efficientnet_lite.load_imagenet,
                           default_weights=efficientnet_lite.default_weights)
RESNET = Family(build=lambda name, output_stride, deploy: resnet.ResNet50(output_stride),
                load_imagenet=resnet.load_resnet_weights,
                default_weights=lambda name: Path("weights") / "resnet50.pth")

FAMILIES: dict[str, Family] = {}


def _register(names, family: Family) -> None:
    for name in names:
        FAMILIES[name] = family


_register(REPVGG_VARIANTS, REPVGG)
_register(efficientnet_lite.VARIANTS, EFFICIENTNET_LITE)
_register(("resnet50",), RESNET)
NAMES = tuple(FAMILIES)


def check(name: str, flag: str = "--backbone") -> str:
    if name not in FAMILIES:
        raise UserError(f"unknown backbone {name!r} ({flag}); valid names: {', '.join(NAMES)}")
    return name


def build_backbone(name: str, output_stride: int = 16, deploy: bool = False) -> nn.Module:
    """A backbone by name, with random weights (`load_pretrained` fills them)."""
    return FAMILIES[check(name)].build(name, output_stride, deploy)


def default_weights(name: str) -> str | None:
    """Where `name`'s ImageNet file is looked for when no path is given (None: there is none)."""
    path = FAMILIES[check(name)].default_weights(name)
    return None if path is None else str(path)


_WARNED_MISSING: set[str] = set()


def load_pretrained(backbone: nn.Module, name: str, path: str | os.PathLike | None) -> bool:
    """Load ImageNet weights into `backbone` when the file exists (True); otherwise warn once per path and
    leave it from scratch (False). A file that exists but does not fit is a one-line UserError."""
    check(name)
    if not path or not os.path.isfile(path):
        key = f"{name}:{path}"
        if key not in _WARNED_MISSING:
            _WARNED_MISSING.add(key)
            log.warning("%s not found: the %s backbone starts from scratch (ImageNet weights: see weights/README.md)",
                        path or "(no checkpoint path given)", name)
        return False
    FAMILIES[name].load_imagenet(backbone, Path(path))
    return True
