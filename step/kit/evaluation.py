"""Scoring against the ground truth, shared by the evaluation stages (S4, S8, S10, S11).

Every evaluation writes <work_space>/metrics_<output folder>.json with the same keys: "stage" (the label
from step.kit.stages), "stage_flag" (the flag of the stage that made what was scored, read from the folder's
stamp), "tiles", "threshold", "scores" (misc.metrics.scores) and "all_building_baseline_iou"; step.report
turns those files into the stage table.

Ground truth may be missing (a dataset from image-level labels only, `voc12.prepare labels`): tiles without
a mask in --gt_dir are not scored. With none at all, the JSON says "ground_truth": false and holds what can be
said without it (the threshold, the building fraction the maps or masks give); with some, the scores are over
those tiles ("tiles") and "tiles_listed" says how many were listed. Where the tiles come from two or more
areas or scenes (<voc12_root>/tiles.csv), "groups" holds the same scores per area.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from misc import fileio, imutils, metrics, visutils
from misc.errors import UserError
from misc.pyutils import Timer, progress
from misc.thresholds import AUTO
from step.kit import stages, stamps
from step.kit.common import pick_threshold
from voc12 import dataloader
from voc12.layout import read_tile_groups

log = logging.getLogger(__name__)
SWEEP = tuple(round(t, 2) for t in np.arange(0.05, 0.605, 0.01))


def evaluate_maps(names: Sequence[str], map_dir: str | Path, gt_dir: str | Path, thresholds: Sequence[float],
                  channel: int = 0, vis: tuple[Path, dict[str, Path], int] | None = None,
                  desc: str = "evaluate", groups: Mapping[str, str] | None = None
                  ) -> tuple[dict[float, np.ndarray], dict[str, dict]]:
    """Dataset-level confusion per threshold of `high_res[channel]` against the ground truth, and the scores
    per group at thresholds[0] (`group_scores` of `groups`, from the same read of each map)."""
    meters = {t: metrics.ConfusionMeter() for t in thresholds}
    at_operating_point: dict[str, np.ndarray] = {}
    map_dir, gt_dir = Path(map_dir), Path(gt_dir)
    for i, name in enumerate(progress(names, desc=desc)):
        map_path = map_dir / f"{name}.npy"
        if not map_path.is_file():
            raise UserError(f"{map_path} is missing for the listed positive {name!r}; run the stage that makes "
                            f"{map_dir} (or check --infer_list)")
        building = fileio.load_npy_dict(map_path)["high_res"][channel]
        gt = imutils.read_gt(gt_dir / f"{name}.png") if (gt_dir / f"{name}.png").is_file() else None
        if gt is None:
            raise UserError(f"ground truth {gt_dir / (name + '.png')} is missing; set --gt_dir")
        if gt.shape != building.shape:
            raise UserError(f"{map_path} is {building.shape[1]}x{building.shape[0]} but its ground truth is "
                            f"{gt.shape[1]}x{gt.shape[0]}; the maps were made from other images")
        for t, meter in meters.items():
            conf = metrics.confusion(gt, metrics.threshold_building(building, t))
            meter.matrix += conf
            if groups and t == thresholds[0]:
                at_operating_point[name] = conf
        if vis is not None and i < vis[2]:
            image = imutils.read_image(vis[1][name])
            panel = visutils.overlay_panel(image, building, metrics.threshold_building(building, thresholds[0]), gt)
            fileio.save_png(vis[0] / f"{name}.png", panel)
    by_group = group_scores(list(at_operating_point), groups or {}, at_operating_point.__getitem__)
    return {t: m.matrix for t, m in meters.items()}, by_group


def report(args: argparse.Namespace, map_dir: str, thresholds: Sequence[float | str], channel: int, tag: str,
           sweep: bool, flag: str, map_stage: str, labels_dir: str | None = None) -> dict:
    """Evaluate, log a table, write metrics_<dir>.json and overlays; shared by S4 and S8.

    thresholds[0] is the operating point, a number or 'auto' (picked without ground truth,
    step.kit.common.pick_threshold: from the confident labels in `labels_dir` where the maps' network was trained
    on them, else from the maps; `flag` and `map_stage` name it and the stage that writes the maps); further
    thresholds (and the 0.05..0.60 sweep when `sweep`) are reported too, with the best of them marked as
    chosen with ground truth."""
    timer = Timer()
    names = [n for n in dataloader.read_list(args.infer_list, "--infer_list")]
    cls_labels = dataloader.load_cls_labels(args.cls_labels)
    names = [n for n in names if cls_labels.get(n) == 1]
    if not names:
        raise UserError(f"--infer_list {args.infer_list} has no positive tile to evaluate")
    scored = with_ground_truth(names, args.gt_dir)
    paths = dataloader.check_dataset(names, Path(args.image_dir), list_flag="--infer_list",
                                     list_path=args.infer_list, cls_labels=cls_labels,
                                     decode=False, workers=args.pool_workers)
    if scored:
        dataloader.check_dataset(scored, Path(args.image_dir), list_flag="--infer_list", list_path=args.infer_list,
                                 mask_dir=args.gt_dir, decode=False, workers=args.pool_workers)
    stage = Path(map_dir).name
    made_by_flag, variant = stamps.made_by(map_dir)
    rule = AUTO if thresholds[0] == AUTO else "fixed"
    thresholds = (pick_threshold(thresholds[0], flag, map_dir, names, channel, map_stage, tag, labels_dir),
                  *thresholds[1:])
    head = {"stage": stages.label(made_by_flag, variant, fallback=stage), "stage_flag": made_by_flag,
            "variant": variant, "map_dir": str(map_dir)}
    if not scored:
        return _report_without_gt(args, head, names, map_dir, thresholds[0], rule, channel, tag)
    all_t = tuple(thresholds) + tuple(t for t in (SWEEP if sweep else ()) if t not in thresholds)
    confusions, groups = evaluate_maps(scored, map_dir, args.gt_dir, all_t, channel,
                                       vis=(Path(args.work_space) / "vis" / stage, paths, args.num_vis), desc=tag,
                                       groups=read_tile_groups(args.voc12_root))
    table = {t: metrics.scores(c) for t, c in confusions.items()}
    fixed = thresholds[0]
    result = {**head, "tiles": len(scored),
              "threshold": fixed, "threshold_rule": rule, "scores": table[fixed],
              "all_building_baseline_iou": all_building_iou(confusions[fixed])}
    if len(scored) < len(names):
        result["tiles_listed"] = len(names)
        log.info("[%s] scores over the %d of %d positives with ground truth in %s", tag, len(scored), len(names),
                 args.gt_dir)
    for t in all_t:
        log.info("[%s] %s t=%.2f  %s", tag, stage, t, metrics.format_scores(table[t]))
    if groups:
        result["groups"] = groups
        log_group_scores(tag, f"{stage} at t={fixed:.2f}", groups)
    if len(all_t) > 1:
        best = max(all_t, key=lambda t: table[t]["building_iou"])
        result["sweep"] = {f"{t:.2f}": table[t] for t in all_t}
        result["best_threshold"], result["best_scores"] = best, table[best]
        log.info("[%s] best t=%.2f (chosen with ground truth)  %s", tag, best, metrics.format_scores(table[best]))
    fileio.save_json(Path(args.work_space) / f"metrics_{stage}.json", result)
    log.info("[%s] %s: %d tiles at t=%.2f: building IoU %.4f F1 %.4f (all-building baseline IoU %.4f) in %.0fs",
             tag, stage, len(names), fixed, table[fixed]["building_iou"], table[fixed]["f1"],
             result["all_building_baseline_iou"], timer.elapsed)
    return result


def with_ground_truth(names: Sequence[str], gt_dir: str | Path | None) -> list[str]:
    """The names whose ground truth <gt_dir>/<name>.png exists (none when --gt_dir is not a folder)."""
    if gt_dir is None or not Path(gt_dir).is_dir():
        return []
    return [n for n in names if (Path(gt_dir) / f"{n}.png").is_file()]


def no_ground_truth(gt_dir: str | Path | None, count: int, what: str) -> str:
    """The phrase every evaluation logs when none of its `count` tiles has ground truth."""
    return f"no ground truth ({gt_dir} has no mask of the {count} {what}), so nothing is scored"


def _report_without_gt(args: argparse.Namespace, head: dict, names: Sequence[str], map_dir: str | Path,
                       threshold: float, rule: str, channel: int, tag: str) -> dict:
    """What S4/S8 say without ground truth: the threshold and the share of the positives' pixels above it."""
    above = total = 0
    for name in progress(names, desc=tag):
        building = fileio.load_npy_dict(Path(map_dir) / f"{name}.npy")["high_res"][channel]
        above += int(np.count_nonzero(metrics.threshold_building(building, threshold)))
        total += building.size
    result = {**head, "tiles": len(names), "threshold": threshold, "threshold_rule": rule, "ground_truth": False,
              "building_fraction": above / max(total, 1)}
    fileio.save_json(Path(args.work_space) / f"metrics_{Path(map_dir).name}.json", result)
    log.info("[%s] %s: %s; at t=%.4f (%s) the maps call %.1f%% of the positives' pixels building", tag,
             Path(map_dir).name, no_ground_truth(args.gt_dir, len(names), "positives"), threshold, rule,
             100 * result["building_fraction"])
    return result


def masks_without_gt(names: Sequence[str], pred_dir: Path, list_flag: str, make_flag: str, desc: str) -> float:
    """The building fraction of the {0, 1} PNG masks of `names` (what S10/S11 say without ground truth)."""
    building = total = 0
    for name in progress(names, desc=desc):
        pred_path = pred_dir / f"{name}.png"
        if not pred_path.is_file():
            raise UserError(f"{pred_path} is missing for {name!r} of {list_flag}; run {make_flag} with the same list")
        pred = imutils.read_mask(pred_path)
        building += int(np.count_nonzero(pred == 1))
        total += pred.size
    return building / max(total, 1)


def group_scores(names: Sequence[str], groups: Mapping[str, str],
                 confusion_of: Callable[[str], np.ndarray]) -> dict[str, dict]:
    """Scores per group (the area or scene a tile was cut from, voc12.layout.read_tile_groups) of the tiles
    `names`, from each tile's confusion: an average over areas hides an area where a stage loses. {} when the
    tiles are of fewer than two known groups."""
    found: dict[str, list] = {}
    for name in names:
        if name in groups:
            entry = found.setdefault(groups[name], [0, np.zeros((2, 2), np.int64)])
            entry[0] += 1
            entry[1] += confusion_of(name)
    if len(found) < 2:
        return {}
    return {group: {"tiles": count, **metrics.scores(conf), "all_building_baseline_iou": all_building_iou(conf)}
            for group, (count, conf) in sorted(found.items())}


def log_group_scores(tag: str, what: str, table: Mapping[str, dict]) -> None:
    """One line per group of `group_scores`; with more than stages.MAX_GROUP_LINES groups (a dataset of many scenes)
    one line with the lowest and highest, the rest being in the metrics JSON."""
    if len(table) > stages.MAX_GROUP_LINES:
        ranked = sorted(table.items(), key=lambda item: item[1]["building_iou"])
        (low, low_row), (high, high_row) = ranked[0], ranked[-1]
        log.info("[%s] %s: %d groups (areas or scenes, in the metrics JSON 'groups'): building IoU from %.4f (%s) "
                 "to %.4f (%s)", tag, what, len(table), low_row["building_iou"], low, high_row["building_iou"], high)
        return
    for group, row in table.items():
        log.info("[%s] %s, %s: %d tiles: building IoU %.4f F1 %.4f precision %.4f recall %.4f (all-building %.4f)",
                 tag, what, group, row["tiles"], row["building_iou"], row["f1"], row["precision"], row["recall"],
                 row["all_building_baseline_iou"])


def all_building_iou(conf: np.ndarray) -> float:
    """IoU of predicting building everywhere: the building pixel fraction of the evaluated tiles."""
    return float(conf[1].sum() / max(conf.sum(), 1))


def mask_confusion(names: Sequence[str], pred_dir: Path, gt_dir: Path, list_flag: str, make_flag: str,
                   desc: str) -> tuple[np.ndarray, int]:
    """Dataset-level confusion [2, 2] of the {0, 1} PNG masks in `pred_dir` against the ground truth, and the
    number of tiles whose ground truth has no building. `list_flag` names the list the tiles come from,
    `make_flag` the stage that writes the masks (both for the one-line errors)."""
    conf, empty, _ = mask_scores(names, pred_dir, gt_dir, list_flag, make_flag, desc, objects=False)
    return conf, empty


def mask_scores(names: Sequence[str], pred_dir: Path, gt_dir: Path, list_flag: str, make_flag: str,
                desc: str, objects: bool = True) -> tuple[np.ndarray, int, list[dict]]:
    """`mask_confusion`, plus one row per tile: name, pixels, the building-level tp / fp / fn of
    misc.metrics.match_buildings (with `objects`) and the tile's building IoU (None where the tile has no
    building in prediction or truth)."""
    meter, empty, rows = metrics.ConfusionMeter(), 0, []
    for name in progress(names, desc=desc):
        pred_path, gt_path = pred_dir / f"{name}.png", gt_dir / f"{name}.png"
        if not pred_path.is_file():
            raise UserError(f"{pred_path} is missing for {name!r} of {list_flag}; run {make_flag} with the same list")
        if not gt_path.is_file():
            raise UserError(f"ground truth {gt_path} is missing for {name!r} of {list_flag}; set --gt_dir")
        pred, gt = imutils.read_mask(pred_path), imutils.read_gt(gt_path)
        if pred.shape != gt.shape:
            raise UserError(f"{pred_path} is {pred.shape[1]}x{pred.shape[0]} but its ground truth is "
                            f"{gt.shape[1]}x{gt.shape[0]}; the masks were made from other images")
        if pred.max(initial=0) > 1:
            raise UserError(f"{pred_path} holds values other than 0/1; rerun {make_flag}")
        conf = metrics.confusion(gt, pred)
        meter.matrix += conf
        empty += int(not gt.any())
        if objects:
            tp, fp, fn = metrics.match_buildings(pred, gt)
            union = conf[1].sum() + conf[:, 1].sum() - conf[1, 1]
            rows.append({"name": name, "pixels": int(pred.size), "tp": tp, "fp": fp, "fn": fn,
                         "building_iou": round(float(conf[1, 1] / union), 6) if union else None,
                         "confusion": conf})
    return meter.matrix, empty, rows


def write_tile_csv(path: Path, rows: Sequence[dict]) -> None:
    """The per-tile rows of `mask_scores` as CSV (an empty building_iou: no building in prediction or truth),
    with the tile's pixels predicted building where the ground truth has none (fp_pixels) and the reverse
    (fn_pixels)."""
    columns = ["name", "pixels", "tp", "fp", "fn", "building_iou", "fp_pixels", "fn_pixels"]
    lines = [",".join(columns)]
    for r in rows:
        values = {**r, "fp_pixels": int(r["confusion"][0, 1]), "fn_pixels": int(r["confusion"][1, 0])}
        lines.append(",".join("" if values[c] is None else str(values[c]) for c in columns))
    fileio.save_lines(path, lines)


DISAGREEMENT_TILES = 10  # tiles listed in each direction by `most_disagreeing`


def most_disagreeing(rows: Sequence[dict], count: int = DISAGREEMENT_TILES) -> dict[str, list[dict]]:
    """The `count` tiles where prediction and ground truth disagree most, each way: "building_not_in_truth"
    (predicted building over the truth's background: missed roofs in the reference, or false alarms) and
    "truth_not_predicted" (reference buildings the model did not find), by share of the tile's pixels (the
    rows of `mask_scores`; ties by name)."""
    def top(cell: tuple[int, int]) -> list[dict]:
        share = [(float(r["confusion"][cell] / max(r["pixels"], 1)), r["name"]) for r in rows]
        ranked = sorted(share, key=lambda item: (-item[0], item[1]))[:count]
        return [{"name": name, "share": round(value, 4)} for value, name in ranked if value > 0]
    return {"building_not_in_truth": top((0, 1)), "truth_not_predicted": top((1, 0))}
