"""S11's derived settings, shared by train_seg, export_seg, make_seg and eval_seg: which checkpoint, which masks
it learns from and what that is called. Its flags' defaults (--seg_backbone, --seg_weights, --seg_infer_list,
--seg_out_dir) are resolved in run_sample.py with every other default."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from misc.pyutils import weights_paths

PSEUDO, GROUND_TRUTH = "pseudo masks", "ground truth"


@dataclass(frozen=True)
class SegSettings:
    """What S11's flags (resolved by run_sample.py) mean for its stages."""
    checkpoint: Path
    label_dir: str
    label_flag: str
    trained_on: str


def seg_settings(args: argparse.Namespace) -> SegSettings:
    gt = args.seg_label_dir is not None
    return SegSettings(
        checkpoint=weights_paths(args.seg_weights_name)[0],
        label_dir=args.seg_label_dir if gt else args.pseudo_mask_out_dir,
        label_flag="--seg_label_dir" if gt else "--pseudo_mask_out_dir (run --make_pseudo_mask_pass True)",
        trained_on=GROUND_TRUTH if gt else PSEUDO)


def trained_on(checkpoint: Path, default: str) -> str:
    """What the model was trained on, as recorded in its checkpoint (`default` if there is none)."""
    if not checkpoint.is_file():
        return default
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: make_seg would have refused it; the flags decide the label
        return default
    return str(ckpt.get("trained_on", default)) if isinstance(ckpt, dict) else default
