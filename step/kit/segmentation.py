"""S11's derived settings, shared by train_seg, export_seg, make_seg and eval_seg: which checkpoint, which masks
it learns from and what that is called. Its flags' defaults (--seg_backbone, --seg_weights, --seg_infer_list,
--seg_out_dir) are resolved in run_sample.py with every other default."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from misc import imutils
from misc.pyutils import weights_paths
from misc.tilegrid import TileContext
from net import deeplabv3plus
from step.kit.stamps import files_digest

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


def context_fingerprint(context: TileContext) -> dict:
    """What predictions or training with `context` depend on beyond their own tiles: the margin and the files of
    every tile that can be a neighbour."""
    return {"margin": context.margin,
            "neighbours": files_digest((str(k), p) for k, p in sorted(context.index.items())) if context.index else None}


def prediction_settings(args: argparse.Namespace) -> dict:
    """How a stage predicts with DeepLabV3+, for its outputs' fingerprint: --seg_window, --seg_overlap,
    --seg_scales, --amp and, where not the reference's flip, --seg_views (so outputs made before the flag existed
    stay valid)."""
    settings = {"window": args.seg_window, "overlap": args.seg_overlap, "scales": list(args.seg_scales), "amp": args.amp}
    if args.seg_views != "flip":
        settings["views"] = args.seg_views
    return settings


def tile_logits(model: torch.nn.Module, path: Path, context: TileContext, args: argparse.Namespace,
                device: torch.device, read: Callable[[Path], np.ndarray] = imutils.read_image
                ) -> tuple[np.ndarray, torch.Tensor]:
    """(image, logits [C, H, W]) of one PNG/JPEG image as make_seg predicts it: grown by `context.margin` pixels
    (its neighbouring XYZ tiles where on disk, mirrored elsewhere: `imutils.with_margin`), predicted with
    --seg_window, --seg_overlap, --seg_scales and --seg_views, cut back to the image. An image no larger than
    --seg_window is predicted with its margin as one window, rather than split into four. `read` decodes an
    image; a cache (voc12.dataloader.DecodedCache) decodes each tile once though it is up to nine tiles' context."""
    image = read(path)
    grown = imutils.with_margin(image, {k: read(p) for k, p in context.neighbours(path).items()}, context.margin)
    margin = (grown.shape[0] - image.shape[0]) // 2
    window = max(grown.shape[:2]) if max(image.shape[:2]) <= args.seg_window else args.seg_window
    logits = deeplabv3plus.predict(model, grown, window, args.seg_overlap, args.seg_scales, args.seg_infer_batch,
                                   device, args.amp, args.seg_views)
    h, w = image.shape[:2]
    return image, logits[:, margin:margin + h, margin:margin + w]
