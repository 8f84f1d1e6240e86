"""S9: the final pseudo masks: building iff the AR map's building channel > --amn_eval_thres (a number, or
'auto': the cut at which the AR maps best reproduce the S5 confident labels the AR network was trained on,
the same value S8 scores; no ground truth).

Reads:  <amn_cam_out_dir>/<name>.npy for the positives of --train_list; with 'auto' their S5 labels in
        --ir_label_out_dir.
Writes: <pseudo_mask_out_dir>/<name>.png, uint8 {0, 1}, for every tile of --train_list (zeros for
        negatives); overlays of the first --num_vis positives in <work_space>/vis/pseudo_mask/.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from misc import fileio, imutils, metrics, visutils
from misc.errors import UserError
from misc.ownership import folders_of
from misc.pyutils import Timer, progress
from misc.torchutils import barrier, runtime
from step.kit.common import inference_names, load_split, pick_threshold
from step.kit.stages import stage_tag
from step.kit.stamps import made_from, reusable_outputs

log = logging.getLogger(__name__)
TAG = stage_tag(__name__)


def pseudo_mask(amn_map: np.ndarray, threshold: float) -> np.ndarray:
    """{0,1} mask of the building channel [1] of an AR map [2, H, W]."""
    return metrics.threshold_building(amn_map[1], threshold)


def run(args: argparse.Namespace) -> None:
    rt, timer = runtime(), Timer()
    split = load_split(args, "train_list", decode=False)
    out_dir, map_dir = Path(args.pseudo_mask_out_dir), Path(args.amn_cam_out_dir)
    threshold = pick_threshold(args.amn_eval_thres, "--amn_eval_thres", map_dir, split.positives, channel=1,
                               map_stage="S7 (--make_amn_cam_pass True)", tag=TAG, labels_dir=args.ir_label_out_dir)
    # cheap: always redone (resume off), so never stale; the stamp lists the masks, so only they are ever deleted
    reusable_outputs(out_dir, {"maps": made_from(map_dir), "threshold": threshold}, resume=False, suffix=".png",
                     stage="make_pseudo_mask", names=split.names, flag="--pseudo_mask_out_dir",
                     inputs={"--amn_cam_out_dir": [map_dir], "--ir_label_out_dir": [args.ir_label_out_dir],
                             "--voc12_root": folders_of(split.image_paths.values()), "--gt_dir": [args.gt_dir]})
    names = inference_names(split.names, done=set())
    building_px = total_px = 0
    vis_left = args.num_vis if rt.is_main else 0
    for name in progress(names, desc=TAG, disable=not rt.is_main):
        if split.cls_labels[name] == 1:
            map_path = map_dir / f"{name}.npy"
            if not map_path.is_file():
                raise UserError(f"{map_path} is missing for the positive {name!r}; run --make_amn_cam_pass True first")
            amn_map = fileio.load_npy_dict(map_path)["high_res"]
            mask = pseudo_mask(amn_map, threshold)
            if vis_left > 0:
                image = imutils.read_image(split.image_paths[name])
                gt_path = Path(args.gt_dir) / f"{name}.png"
                gt = imutils.read_gt(gt_path) if gt_path.is_file() else None
                fileio.save_png(Path(args.work_space) / "vis" / "pseudo_mask" / f"{name}.png",
                                visutils.overlay_panel(image, amn_map[1], mask, gt))
                vis_left -= 1
        else:
            height, width = imutils.image_size(split.image_paths[name])
            mask = np.zeros((height, width), np.uint8)
        fileio.save_png(out_dir / f"{name}.png", mask)
        building_px += int(mask.sum())
        total_px += mask.size
    barrier()
    log.info("[%s] %d pseudo masks (%.1f%% building pixels on this rank) at t=%.2f in %.0fs -> %s", TAG, len(names),
             100 * building_px / max(total_px, 1), threshold, timer.elapsed, out_dir)
