"""S10 (optional) evaluation: the random-walk masks against the ground truth.

Reads:  <sem_seg_out_dir>/<name>.png {0, 1} and <gt_dir>/<name>.png (0/255) for the positives of
        --infer_list (as S4 / S8 score their maps).
Writes: <work_space>/metrics_sem_seg.json in the schema of step.kit.evaluation.report, so `python -m step.report`
        lists it. The confusion is misc.metrics' (dataset level, ground truth 0/255 -> 0/1), not the
        release's (which mapped 255 to 0 and cut the confusion to [:2, :2], with absolute paths).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from misc import fileio, metrics
from misc.errors import UserError
from misc.pyutils import Timer
from misc.torchutils import barrier, runtime
from step.kit import stages, stamps
from step.kit.common import load_split
from step.kit.evaluation import all_building_iou, mask_confusion

log = logging.getLogger(__name__)
TAG = stages.stage_tag(__name__)


def report_sem_seg(args: argparse.Namespace) -> dict:
    """Score the masks, write metrics_sem_seg.json and log one summary line."""
    timer = Timer()
    names = load_split(args, "infer_list", decode=False).positives  # mask_confusion checks the ground truth
    if not names:
        raise UserError(f"--infer_list {args.infer_list} has no positive tile to evaluate")
    conf, _ = mask_confusion(names, Path(args.sem_seg_out_dir), Path(args.gt_dir), "--infer_list",
                             "--make_sem_seg_pass True (its --train_list must hold these tiles)", TAG)
    scores = metrics.scores(conf)
    flag, variant = stamps.made_by(args.sem_seg_out_dir)
    result = {"stage": stages.label(flag, variant, fallback=Path(args.sem_seg_out_dir).name), "stage_flag": flag,
              "variant": variant, "pred_dir": str(args.sem_seg_out_dir), "tiles": len(names),
              "threshold": args.sem_seg_bg_thres, "scores": scores,
              "all_building_baseline_iou": all_building_iou(conf)}
    fileio.save_json(Path(args.work_space) / "metrics_sem_seg.json", result)
    log.info("[%s] %d positives at bg t=%.2f: %s (all-building baseline IoU %.4f) in %.0fs", TAG, len(names),
             args.sem_seg_bg_thres, metrics.format_scores(scores), result["all_building_baseline_iou"], timer.elapsed)
    return result


def run(args: argparse.Namespace) -> None:
    if runtime().is_main:  # cheap, one file: rank 0 alone
        report_sem_seg(args)
    barrier()
