"""The backbone registry: every network (classifier, MSG-SR-Net, AR network, IRN, DeepLabV3+) builds its
feature extractor here by name, so `--backbone`, `--amn_backbone` and `--seg_backbone` accept every name.

A backbone is an nn.Module with
- `forward_features(x) -> [f1, f2, f3, f4]`: four levels at `feature_strides` (4, 8, 16 and the output
  stride) with `feature_channels` channels; its input is RGB normalised with the ImageNet mean and std (what
  voc12.dataloader gives) and a backbone that was trained on another normalisation converts it itself;
- its ImageNet classifier, if it has one, kept (so the ImageNet file loads strictly) but frozen.
The registry owns what differs between families: each supplies its constructor, where its ImageNet file
lives, the hint of a file that does not fit (and, if needed, a filter of the file's keys) and, if it has
re-parameterisable blocks, their folding. The strict loader (`load_imagenet`) and the folding of a whole
network (`reparameterize`) are written once here. `BackboneNet` is the common start of every network.
Adding a family is one module plus one `_register` call below (docs/ARCHITECTURE.md, "Backbones").
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn

from misc import fileio
from misc.errors import UserError
from net import RepVGG, efficientnet_lite, resnet

log = logging.getLogger(__name__)

State = dict[str, torch.Tensor]


def _same_keys(state: State, model: nn.Module) -> State:
    return state


@dataclass(frozen=True)
class Family:
    build: Callable[[str, int], nn.Module]                # (name, output_stride), random weights
    default_weights: Callable[[str], Path | None]         # where the ImageNet file is expected (None: nowhere)
    expected: Callable[[str], str]                        # the right ImageNet file, in words, for the errors
    hint: Callable[[Mapping[str, torch.Tensor], nn.Module], str]  # why a file that does not fit does not
    keys: Callable[[State, nn.Module], State] = _same_keys  # the file's keys as the model names them
    fold: Callable[[nn.Module], object] | None = None     # folds this family's blocks anywhere in a model


def _build_repvgg(name: str, output_stride: int) -> nn.Module:
    if output_stride not in (16, 32):
        raise ValueError(f"{name} is built at output stride 16 or 32, not {output_stride}")
    model = RepVGG.build_repvgg(name, last_stride=1 if output_stride == 16 else 2)
    model.linear.requires_grad_(False)  # the ImageNet head: loaded with the file, never used
    return model


def _build_lite(name: str, output_stride: int) -> nn.Module:
    model = efficientnet_lite.EfficientNetLite(name, output_stride)
    model._fc.requires_grad_(False)  # the ImageNet head: loaded with the file, never used
    return model


REPVGG = Family(build=_build_repvgg, default_weights=lambda name: Path("weights") / f"{name}-train.pth",
                expected=lambda name: "an official RepVGG -train.pth checkpoint", hint=RepVGG.imagenet_hint,
                fold=RepVGG.repvgg_model_convert)
EFFICIENTNET_LITE = Family(build=_build_lite, default_weights=efficientnet_lite.default_weights,
                           expected=efficientnet_lite.expected_file, hint=efficientnet_lite.imagenet_hint)
RESNET = Family(build=lambda name, output_stride: resnet.ResNet50(output_stride),
                default_weights=lambda name: Path("weights") / "resnet50.pth",
                expected=lambda name: "torchvision's resnet50 ImageNet weights", hint=resnet.imagenet_hint,
                keys=resnet.imagenet_keys)

FAMILIES: dict[str, Family] = {}


def _register(names, family: Family) -> None:
    for name in names:
        FAMILIES[name] = family


_register(RepVGG.VARIANTS, REPVGG)
_register(efficientnet_lite.VARIANTS, EFFICIENTNET_LITE)
_register(("resnet50",), RESNET)
NAMES = tuple(FAMILIES)


def check(name: str, flag: str = "--backbone") -> str:
    if name not in FAMILIES:
        raise UserError(f"unknown backbone {name!r} ({flag}); valid names: {', '.join(NAMES)}")
    return name


def build_backbone(name: str, output_stride: int = 16) -> nn.Module:
    """A backbone by name, train-time form, with random weights (`load_pretrained` fills them)."""
    return FAMILIES[check(name)].build(name, output_stride)


def default_weights(name: str) -> str | None:
    """Where `name`'s ImageNet file is looked for when no path is given (None: there is none)."""
    path = FAMILIES[check(name)].default_weights(name)
    return None if path is None else str(path)


def reparameterize(model: nn.Module) -> nn.Module:
    """Fold every re-parameterisable block of any family anywhere in `model` (in place) for inference;
    idempotent, and a no-op for families without such blocks. Returns `model`."""
    for family in {id(f): f for f in FAMILIES.values()}.values():
        if family.fold is not None:
            family.fold(model)
    return model


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") if keys else "-"


def load_state(backbone: nn.Module, name: str, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ImageNet weights `state` (from `source`, named in the error) into the backbone `name` strictly:
    missing, unexpected and mismatched-shape keys are one UserError line with the family's hint."""
    family = FAMILIES[check(name)]
    state = family.keys(dict(state), backbone)
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched[:2]]
        raise UserError(f"{source} does not match {name}: {len(missing)} missing keys (first: {_first(missing)}), "
                        f"{len(unexpected)} unexpected keys (first: {_first(unexpected)}), {len(mismatched)} "
                        f"mismatched shapes (first: {'; '.join(shapes) or '-'}); {family.hint(state, backbone)}")
    backbone.load_state_dict(state, strict=True)


def load_imagenet(backbone: nn.Module, name: str, path: str | os.PathLike | None = None) -> Path:
    """Load the ImageNet file `path` (default: the family's) strictly into the backbone `name`; returns its
    path. Every failure is one UserError line naming the file and the fix."""
    family = FAMILIES[check(name)]
    if path is None:
        path = family.default_weights(name)
        if path is None:
            raise UserError(f"no ImageNet weights for {name}: expected {family.expected(name)}")
    state = fileio.read_state_dict(path, family.expected(name))
    load_state(backbone, name, state, str(path))
    return Path(path)


_WARNED_MISSING: set[str] = set()


def load_pretrained(backbone: nn.Module, name: str, path: str | os.PathLike | None) -> bool:
    """Load ImageNet weights into `backbone` when the file exists (True); otherwise warn once per path and
    leave it from scratch (False). A file that exists but does not fit is a one-line UserError. An empty
    `path` is the user's explicit `none` (run_sample.py): from scratch without a warning."""
    check(name)
    if path == "":
        return False
    if not path or not os.path.isfile(path):
        key = f"{name}:{path}"
        if key not in _WARNED_MISSING:
            _WARNED_MISSING.add(key)
            log.warning("%s not found: the %s backbone starts from scratch (ImageNet weights: see weights/README.md)",
                        path or "(no checkpoint path given)", name)
        return False
    load_imagenet(backbone, name, path)
    return True


class BackboneNet(nn.Module):
    """The common start of every network: one registered backbone at output stride 16, its name (stored in
    checkpoints, so later stages rebuild it from the file) and the two parameter groups of training.

    A subclass sets `NETWORK`, the id stored in its checkpoints (kept when a module is renamed, so files
    written before still load), and `REMAKE`, the flags that rewrite its weights (named in every loading
    error); it adds its layers after `super().__init__(backbone)` and lists them in `head_parameters`.
    """

    NETWORK: ClassVar[str]
    REMAKE: ClassVar[str]
    BACKBONE_ATTR: ClassVar[str] = "backbone"  # DeepLabV3+ keeps its `encoder.*` keys

    def __init__(self, backbone: str) -> None:
        super().__init__()
        self.backbone_name = backbone
        setattr(self, self.BACKBONE_ATTR, build_backbone(backbone, output_stride=16))

    @property
    def pretrained(self) -> nn.Module:
        """The backbone: the part that takes ImageNet weights."""
        return getattr(self, self.BACKBONE_ATTR)

    def head_parameters(self) -> list[nn.Parameter]:
        """The new layers' parameters (trained at 10x lr)."""
        raise NotImplementedError

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(trainable backbone parameters, new-layer parameters); the second group trains at 10x lr."""
        return [p for p in self.pretrained.parameters() if p.requires_grad], list(self.head_parameters())
