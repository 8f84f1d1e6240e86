"""S5: confident {0, 1, 255} labels from the BAC maps with a dense CRF.

Reads:  --train_list tiles under <voc12_root>/JPEGImages (raw uint8 RGB, no normalisation);
        <lpcam_out_dir>/<name>.npy `high_res[0]` for every positive (S3 output); --gt_dir masks for the
        summary only, when they are there.
Writes: <ir_label_out_dir>/<name>.png, uint8 HxW in {0, 1, 255} (1 building, 0 background, 255 ignore),
        and <name>_palette.png (P mode) for viewing; negatives get all zeros (confident background).
        <work_space>/metrics_ir_label.json: tiles, positives, coverage and, with ground truth, the
        precision of confident building / background pixels over the positives.
Label: fg = CRF(1[m > --conf_fg_thres]), bg = CRF(1[m > --conf_bg_thres]); 1 where fg, 0 where neither,
255 elsewhere (misc.crf.confident_label). Thresholds 0.25 / 0.15 for BAC maps (the reference script's).

The work is step.kit.labels.make_ir_labels, shared with S9b (the AR maps, channel 1, thresholds 0.45 / 0.15).
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
    summary = make_ir_labels(split.names, split.cls_labels, split.image_paths, args.lpcam_out_dir,
                             args.ir_label_out_dir, channel=0, fg_thres=args.conf_fg_thres,
                             bg_thres=args.conf_bg_thres, num_workers=args.pool_workers, gt_dir=args.gt_dir,
                             resume=args.resume, map_stage="S3 (--make_lpcam_pass True)", tag=TAG,
                             stage="cam_to_ir_label")
    if runtime().is_main:
        fileio.save_json(Path(args.work_space) / "metrics_ir_label.json", {"stage_flag": "cam_to_ir_label", **summary})
