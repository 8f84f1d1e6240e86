"""S11's resolved settings, shared by train_seg, make_seg and eval_seg: which encoder, which ImageNet
weights, which checkpoint, which masks it learns from, what it predicts and where."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from misc.pyutils import weights_paths
from net import backbones

PSEUDO, GROUND_TRUTH = "pseudo masks", "ground truth"


@dataclass(frozen=True)
class SegSettings:
    """The S11 flags left at None, resolved (shared by train_seg, make_seg and eval_seg)."""
    backbone: str
    imagenet_weights: str
    checkpoint: Path
    label_dir: str
    label_flag: str
    trained_on: str
    infer_list: str
    out_dir: Path


def seg_settings(args: argparse.Namespace) -> SegSettings:
    backbone = backbones.check(args.seg_backbone or args.backbone, "--seg_backbone")
    weights = args.seg_weights
    if weights is None:
        weights = args.MODEL_WEIGHTS if backbone == args.backbone else backbones.default_weights(backbone)
    gt = args.seg_label_dir is not None
    return SegSettings(
        backbone=backbone, imagenet_weights=weights, checkpoint=weights_paths(args.seg_weights_name)[0],
        label_dir=args.seg_label_dir if gt else args.pseudo_mask_out_dir,
        label_flag="--seg_label_dir" if gt else "--pseudo_mask_out_dir (run --make_pseudo_mask_pass True)",
        trained_on=GROUND_TRUTH if gt else PSEUDO,
        infer_list=args.seg_infer_list or args.test_list,
        out_dir=Path(args.seg_out_dir or Path(args.work_space) / "seg"))


def trained_on(checkpoint: Path, default: str) -> str:
    """What the model was trained on, as recorded in its checkpoint (`default` if there is none)."""
    if not checkpoint.is_file():
        return default
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: make_seg would have refused it; the flags decide the label
        return default
    return str(ckpt.get("trained_on", default)) if isinstance(ckpt, dict) else default
