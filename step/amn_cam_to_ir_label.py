"""AMN's confident labels from the AR maps (the path towards the optional IRN stage).

Reads:  <amn_cam_out_dir>/<name>.npy (channel 1); --train_list images.
Writes: <amn_ir_label_out_dir>/<name>.png {0,1,255} for every tile, all zeros for negatives (the
        release wrote nothing, so IRN training crashed); thresholds --amn_conf_fg_thres 0.45 /
        --amn_conf_bg_thres 0.15 (AMN's values).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from misc import fileio
from misc.torchutils import runtime
from step.kit.common import load_split
from step.kit.labels import make_ir_labels
from step.kit.stages import stage_tag

TAG = stage_tag(__name__)


def run(args: argparse.Namespace) -> None:
    split = load_split(args, "train_list", decode=False)
    summary = make_ir_labels(split.names, split.cls_labels, split.image_paths, args.amn_cam_out_dir,
                             args.amn_ir_label_out_dir, channel=1, fg_thres=args.amn_conf_fg_thres,
                             bg_thres=args.amn_conf_bg_thres, flags=("--amn_conf_fg_thres", "--amn_conf_bg_thres"),
                             num_workers=args.pool_workers, gt_dir=args.gt_dir,
                             resume=args.resume, map_stage="S7 (--make_amn_cam_pass True)", tag=TAG,
                             stage="amn_cam_to_ir_label")
    if runtime().is_main:
        fileio.save_json(Path(args.work_space) / "metrics_amn_ir_label.json",
                         {"stage_flag": "amn_cam_to_ir_label", **summary})
