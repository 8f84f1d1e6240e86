"""S11 evaluation: the DeepLabV3+ masks against the ground truth.

Reads:  <seg_out_dir>/<name>.png {0,1} and <gt_dir>/<name>.png (0/255) for EVERY tile of
        --seg_infer_list (default <voc12_root>/test.txt): negatives and tiles dropped by the 25% rule
        count too, unlike S4/S8 which score positives only; <seg_weights_name>.pth for its "trained_on".
Writes: <work_space>/metrics_<seg_out_dir name>.json (metrics_seg.json by default), in the schema of
        step.kit.evaluation.report, so `python -m step.report` lists it; the confusion is misc.metrics'.
        Beside the pixel scores, building-level object_precision, object_recall and object_f1 (SpaceNet:
        8-connected buildings matched one to one at IoU >= 0.5, tp / fp / fn summed over the tiles,
        misc.metrics.match_buildings) in "scores", the counts in "object_counts". A building cut by a tile edge
        counts once per tile, as the tiles are scored one by one.
        <work_space>/metrics_<seg_out_dir name>_tiles.csv: name, pixels, tp, fp, fn, building_iou, fp_pixels,
        fn_pixels per tile. The JSON's "disagreement" lists the tiles where masks and ground truth disagree
        most, each way (predicted building the truth lacks: often roofs missing from OpenStreetMap; truth not
        predicted), and with --num_vis > 0 each list is drawn as one sheet (image | masks), in the JSON's order, in
        <work_space>/vis/<seg_out_dir name>_disagree_<which way>.png (masks red, ground truth outlined green).
        Tiles without ground truth (unlabelled tiles of `voc12.prepare labels`) are not scored; with none at
        all, the JSON says "ground_truth": false and gives the building fraction of the masks.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from misc import fileio, imutils, metrics, visutils
from misc.pyutils import Timer
from misc.torchutils import barrier, runtime
from step.kit import stages
from step.kit.evaluation import (all_building_iou, group_scores, log_group_scores, mask_scores,
                                 masks_without_gt, most_disagreeing, no_ground_truth, with_ground_truth,
                                 write_tile_csv)
from step.kit.segmentation import seg_settings, trained_on
from voc12 import dataloader
from voc12.layout import read_tile_groups

log = logging.getLogger(__name__)
TAG = stages.stage_tag(__name__)


def report_seg(args: argparse.Namespace) -> dict:
    """Score the masks of every listed tile, log one line and write the metrics JSON."""
    timer, s = Timer(), seg_settings(args)
    listed = dataloader.read_list(args.seg_infer_list, "--seg_infer_list")
    names = with_ground_truth(listed, args.gt_dir)
    if not names:
        return _report_without_gt(args, s, listed, timer)
    if len(names) < len(listed):
        log.info("[%s] scores over the %d of %d tiles with ground truth in %s", TAG, len(names), len(listed),
                 args.gt_dir)
    conf, empty, rows = mask_scores(names, Path(args.seg_out_dir), Path(args.gt_dir), "--seg_infer_list", "--make_seg_pass True", TAG)
    counts = {k: sum(r[k] for r in rows) for k in ("tp", "fp", "fn")}
    objects = metrics.object_scores(counts["tp"], counts["fp"], counts["fn"])
    scores = {**metrics.scores(conf), **objects}
    source = trained_on(s.checkpoint, s.trained_on)
    result = {"stage": stages.label("make_seg", source), "stage_flag": "make_seg", "variant": source,
              "backbone": args.seg_backbone, "trained_on": source, "pred_dir": args.seg_out_dir, "gt_dir": args.gt_dir, "list": args.seg_infer_list, "tiles": len(names), "tiles_without_building": empty,
              "threshold": "argmax", "scores": scores, "all_building_baseline_iou": all_building_iou(conf),
              "object_counts": {**counts, "iou_threshold": 0.5}}
    if len(names) < len(listed):
        result["tiles_listed"] = len(listed)
    by_name = {row["name"]: row["confusion"] for row in rows}
    groups = group_scores(names, read_tile_groups(args.voc12_root), by_name.__getitem__)
    if groups:
        result["groups"] = groups
    result["disagreement"] = most_disagreeing(rows)
    fileio.save_json(Path(args.work_space) / f"metrics_{Path(args.seg_out_dir).name}.json", result)
    if args.num_vis > 0:
        draw_disagreement(args, result["disagreement"])
    write_tile_csv(Path(args.work_space) / f"metrics_{Path(args.seg_out_dir).name}_tiles.csv", rows)
    log.info("[%s] %s: %d tiles (%d without building): %s (all-building baseline IoU %.4f) in %.0fs", TAG,
             result["stage"], len(names), empty, metrics.format_scores(scores), result["all_building_baseline_iou"],
             timer.elapsed)
    log.info("[%s] buildings (IoU >= 0.5): F1 %.4f  precision %.4f  recall %.4f  (tp %d, fp %d, fn %d)", TAG,
             objects["object_f1"], objects["object_precision"], objects["object_recall"], counts["tp"], counts["fp"],
             counts["fn"])
    log_group_scores(TAG, result["stage"], groups)
    for way, tiles in result["disagreement"].items():
        if tiles:
            log.info("[%s] most %s: %s", TAG, way.replace("_", " "),
                     ", ".join(f"{t['name']} ({100 * t['share']:.0f}%)" for t in tiles[:3]))
    return result


def draw_disagreement(args: argparse.Namespace, disagreement: dict[str, list[dict]]) -> None:
    """One sheet per way of `most_disagreeing`: each tile's image beside the same with the mask tinted red and
    the ground truth outlined green, two tiles a row (tiles whose image is not found are left out)."""
    pred_dir, gt_dir = Path(args.seg_out_dir), Path(args.gt_dir)
    for way, tiles in disagreement.items():
        panels = []
        for tile in tiles:
            image_path = imutils.find_image(args.image_dir, tile["name"])
            if image_path is not None:
                panels.append(visutils.mask_pair(imutils.read_image(image_path),
                                                 imutils.read_mask(pred_dir / f"{tile['name']}.png"),
                                                 imutils.read_gt(gt_dir / f"{tile['name']}.png")))
        if panels:
            fileio.save_png(Path(args.work_space) / "vis" / f"{pred_dir.name}_disagree_{way}.png",
                            visutils.contact_sheet(panels, columns=2, side=2 * visutils.SHEET_PANEL + 4))


def _report_without_gt(args: argparse.Namespace, s, listed: list[str], timer: Timer) -> dict:
    source = trained_on(s.checkpoint, s.trained_on)
    fraction = masks_without_gt(listed, Path(args.seg_out_dir), "--seg_infer_list", "--make_seg_pass True", TAG)
    result = {"stage": stages.label("make_seg", source), "stage_flag": "make_seg", "variant": source,
              "backbone": args.seg_backbone, "trained_on": source, "pred_dir": args.seg_out_dir, "gt_dir": args.gt_dir,
              "list": args.seg_infer_list, "tiles": len(listed), "threshold": "argmax", "ground_truth": False,
              "building_fraction": fraction}
    fileio.save_json(Path(args.work_space) / f"metrics_{Path(args.seg_out_dir).name}.json", result)
    log.info("[%s] %s: %s; the masks of the %d tiles are %.1f%% building, in %.0fs", TAG, result["stage"],
             no_ground_truth(args.gt_dir, len(listed), "tiles of --seg_infer_list"), len(listed), 100 * fraction,
             timer.elapsed)
    return result


def run(args: argparse.Namespace) -> None:
    if runtime().is_main:  # cheap, one file: rank 0 alone
        report_seg(args)
    barrier()
