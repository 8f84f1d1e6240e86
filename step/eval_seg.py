"""S11 evaluation: the DeepLabV3+ masks against the ground truth (SPEC S11, decision 8).

Reads:  <seg_out_dir>/<name>.png {0,1} and <gt_dir>/<name>.png (0/255) for EVERY tile of
        --seg_infer_list (default <voc12_root>/test.txt): negatives and tiles dropped by the 25% rule
        count too, unlike S4/S8 which score positives only; <seg_weights_name>.pth for its "trained_on".
Writes: <work_space>/metrics_<seg_out_dir name>.json (metrics_seg.json by default), in the schema of
        step.eval_cam.report, so `python -m misc.report` lists it; the confusion is misc.metrics'.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from misc import fileio, metrics
from misc.pyutils import Timer
from misc.torchutils import barrier, runtime
from step.common import mask_confusion
from step.eval_cam import _all_building_iou
from step.train_seg import GROUND_TRUTH, seg_settings
from voc12 import dataloader

log = logging.getLogger(__name__)
TAG = "S11 eval_seg"


def stage_label(trained_on: str) -> str:
    suffix = " (S11, fully supervised upper bound)" if trained_on == GROUND_TRUTH else " (S11)"
    return f"DeepLabV3+ on {trained_on}{suffix}"


def trained_on(checkpoint: Path, default: str) -> str:
    """What the model was trained on, as recorded in its checkpoint (`default` if there is none)."""
    if not checkpoint.is_file():
        return default
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: make_seg would have refused it; the flags decide the label
        return default
    return str(ckpt.get("trained_on", default)) if isinstance(ckpt, dict) else default


def report_seg(args: argparse.Namespace) -> dict:
    """Score the masks of every listed tile, log one line and write the metrics JSON."""
    timer, s = Timer(), seg_settings(args)
    names = dataloader.read_list(s.infer_list, "--seg_infer_list")
    conf, empty = mask_confusion(names, s.out_dir, Path(args.gt_dir), "--seg_infer_list", "--make_seg_pass True", TAG)
    scores = metrics.scores(conf)
    source = trained_on(s.checkpoint, s.trained_on)
    result = {"stage": stage_label(source), "backbone": s.backbone, "trained_on": source, "pred_dir": str(s.out_dir),
              "gt_dir": args.gt_dir, "list": s.infer_list, "tiles": len(names), "tiles_without_building": empty,
              "threshold": "argmax", "scores": scores, "all_building_baseline_iou": _all_building_iou(conf)}
    fileio.save_json(Path(args.work_space) / f"metrics_{s.out_dir.name}.json", result)
    log.info("[%s] %s: %d tiles (%d without building): %s (all-building baseline IoU %.4f) in %.0fs", TAG,
             result["stage"], len(names), empty, metrics.format_scores(scores), result["all_building_baseline_iou"],
             timer.elapsed)
    return result


def run(args: argparse.Namespace) -> None:
    if runtime().is_main:  # cheap, one file: rank 0 alone
        report_seg(args)
    barrier()
