"""The stage table: `python -m step.report --work_space result_rrdsd` prints every metrics_*.json
written by the evaluation stages as one markdown table, in pipeline order.

Each metrics file names the stage that made what it scores ("stage_flag"); rows are labelled and ordered
by that stage's place in step.kit.stages.STAGES, whatever the output folder was called. An evaluation made
without ground truth shows its threshold and the building fraction of what it would have scored, and "no
ground truth" where a score would be; scores over part of the listed tiles say "12 of 19" tiles. Evaluations
of tiles from several areas or scenes add a table of the building IoU per area under the stage table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from step.kit import stages


def _row_key(path: Path, metrics: dict) -> tuple[int, int, str]:
    flag = metrics.get("stage_flag")
    ground_truth = int(metrics.get("variant") == "ground truth")  # after the same stage on pseudo masks
    return stages.order(flag), ground_truth, path.stem


def _label(path: Path, metrics: dict) -> str:
    return stages.label(metrics.get("stage_flag"), metrics.get("variant", ""),
                        fallback=metrics.get("stage", path.stem[len("metrics_"):]))


def stage_table(work_space: str | Path) -> str:
    rows = []
    loaded = [(path, json.loads(path.read_text())) for path in Path(work_space).glob("metrics_*.json")]
    loaded.sort(key=lambda item: _row_key(*item))
    baseline_done = False
    for path, m in loaded:
        s = m.get("scores", {})
        # the bar the seed CAM must clear: from the first map evaluation of the positives
        if not baseline_done and m.get("stage_flag") in ("make_cam", "make_lpcam") and "all_building_baseline_iou" in m:
            rows.append(all_building_row(m))
            baseline_done = True
        if "building_iou" in s:
            rows.append(f"| {_label(path, m)} | {_tiles(m)} | {_threshold(m)} | "
                        f"{s['building_iou']:.4f} | {s['f1']:.4f} | {s['precision']:.4f} | {s['recall']:.4f} |")
        elif m.get("ground_truth") is False and "building_fraction" in m and "coverage" not in m:
            rows.append(f"| {_label(path, m)} | {m.get('tiles', '')} | {_threshold(m)} | no ground truth | | "
                        f"building {m['building_fraction']:.3f} of pixels | |")
        elif "coverage" in m:  # confident-label stages: coverage and per-class precision, no IoU
            bp, gp = m.get("building_precision"), m.get("background_precision")
            prec = (("no ground truth" if m.get("ground_truth") is False else "n/a") if bp is None
                    else f"bld {bp:.4f} / bg {gp:.4f}")
            if bp is not None and m.get("ground_truth_tiles", m.get("positives")) != m.get("positives"):
                prec += f" ({m['ground_truth_tiles']} of {m['positives']} tiles)"
            fractions = (f"; bld {m['building_fraction']:.3f} / bg {m['background_fraction']:.3f}"
                         if m.get("building_fraction") is not None else "")
            rows.append(f"| {_label(path, m)} | {m.get('positives', '')} | "
                        f"coverage {m['coverage']:.3f}{fractions} | | | {prec} | |")
    head = ("| stage | tiles | threshold | building IoU | F1 | precision | recall |\n"
            "|---|---|---|---|---|---|---|")
    ratio = pseudo_to_gt_ratio(work_space)
    tail = [] if ratio is None else [f"\nDeepLabV3+ on pseudo masks / on ground truth, building IoU: {ratio:.3f}"]
    objects = [f"| {_label(path, m)} | {m['scores']['object_f1']:.4f} | {m['scores']['object_precision']:.4f} | "
               f"{m['scores']['object_recall']:.4f} |" for path, m in loaded if "object_f1" in m.get("scores", {})]
    if not rows and not objects:
        return f"(no metrics_*.json in {work_space})"
    areas = area_table([(path, m) for path, m in loaded if m.get("groups")])
    if areas:
        tail += ["", areas]
    if objects:  # building-level scores (SpaceNet: buildings matched at IoU >= 0.5): eval_seg per tile, eval_footprints per area
        tail += ["\n| buildings matched at IoU >= 0.5 | F1 | precision | recall |\n|---|---|---|---|", *objects]
    return "\n".join(([head, *rows] if rows else []) + tail).strip("\n")


def area_table(loaded: list[tuple[Path, dict]]) -> str:
    """Building IoU per area (and its all-building baseline) of every evaluation that scored several areas."""
    if not loaded:
        return ""
    areas = sorted({area for _, m in loaded for area in m["groups"]})

    def cell(m: dict, area: str) -> str:
        g = m["groups"].get(area)
        return f"{g['building_iou']:.4f} ({g['tiles']}; {g['all_building_baseline_iou']:.4f})" if g else ""

    if len(areas) > stages.MAX_GROUP_LINES:  # many scenes: one row each, the evaluations across
        lines = ["| building IoU by area or scene (tiles; all-building) | "
                 + " | ".join(_label(path, m) for path, m in loaded) + " |", "|---|" + "---|" * len(loaded)]
        lines += [f"| {area} | " + " | ".join(cell(m, area) for _, m in loaded) + " |" for area in areas]
        return "\n".join(lines)
    lines = ["| building IoU by area (tiles; all-building) | " + " | ".join(areas) + " |",
             "|---|" + "---|" * len(areas)]
    lines += [f"| {_label(path, m)} | " + " | ".join(cell(m, area) for area in areas) + " |" for path, m in loaded]
    return "\n".join(lines)


def _tiles(m: dict) -> str:
    """The scored tiles, and of how many listed when only some had ground truth."""
    return f"{m.get('tiles', '')} of {m['tiles_listed']}" if "tiles_listed" in m else str(m.get("tiles", ""))


def _threshold(m: dict) -> str:
    """The operating point, marked 'auto' when it was picked from the maps (without ground truth)."""
    t = m.get("threshold", "")
    rule = m.get("threshold_rule")
    return f"{rule} {t:.2f}" if rule == "auto" else str(t)


def all_building_row(m: dict) -> str:
    """The row of the trivial map that calls every pixel of the positives building, from the seed-CAM
    evaluation's metrics."""
    iou = m["all_building_baseline_iou"]
    f1 = 2 * iou / (1 + iou)  # precision = IoU = the building fraction, recall = 1
    return f"| predict \"building\" everywhere | {m.get('tiles', '')} | | {iou:.4f} | {f1:.4f} | {iou:.4f} | 1.0000 |"


def pseudo_to_gt_ratio(work_space: str | Path) -> float | None:
    """Building IoU of DeepLabV3+ trained on pseudo masks over the same network trained on ground truth
    (the two S11 evaluations that script/train_segmentation.sh writes), or None."""
    iou = {}
    for path in Path(work_space).glob("metrics_*.json"):
        m = json.loads(path.read_text())
        if m.get("stage_flag") == "make_seg" and "building_iou" in m.get("scores", {}):
            iou[m.get("variant")] = m["scores"]["building_iou"]
    weak, full = iou.get("pseudo masks"), iou.get("ground truth")
    if weak is None or full is None:
        return None
    return weak / full if full > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work_space", type=str, default="result_rrdsd", help="folder holding metrics_*.json")
    print(stage_table(parser.parse_args().work_space))


if __name__ == "__main__":
    main()
