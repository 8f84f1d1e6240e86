"""S8: evaluate the AR maps (building channel) at --amn_eval_thres (default 0.67, a fixed value, not
picked with ground truth; 'auto': the cut at which the AR maps best reproduce the S5 confident labels in
--ir_label_out_dir that the AR network was trained on, also without ground truth);
--amn_eval_sweep True also reports the reference's t = 0.65..0.69.

Reads:  <amn_cam_out_dir>/<name>.npy for the positives of --infer_list; --gt_dir; with 'auto' the S5 labels.
Writes: <work_space>/metrics_amn_cam.json, overlays in <work_space>/vis/amn_cam/.
"""
from __future__ import annotations

import argparse

from misc.torchutils import barrier, runtime
from step.kit.evaluation import report
from step.kit.stages import stage_tag

TAG = stage_tag(__name__)
REFERENCE_RANGE = (0.65, 0.66, 0.67, 0.68, 0.69)


def run(args: argparse.Namespace) -> None:
    thresholds = (args.amn_eval_thres,) + (tuple(t for t in REFERENCE_RANGE if t != args.amn_eval_thres)
                                           if args.amn_eval_sweep else ())
    if runtime().is_main:
        report(args, args.amn_cam_out_dir, thresholds, channel=1, tag=TAG, sweep=False, flag="--amn_eval_thres",
               map_stage="S7 (--make_amn_cam_pass True)", labels_dir=args.ir_label_out_dir)
    barrier()
