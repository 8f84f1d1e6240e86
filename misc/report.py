"""The stage table: `python -m misc.report --work_space result_rrdsd` prints every metrics_*.json
written by the evaluation stages as one markdown table, in pipeline order."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = ["cam", "lpcam_mask", "ir_label", "amn_cam", "amn_ir_label", "sem_seg", "seg", "seg_gt"]
LABEL_STAGES = {"ir_label": "confident labels (S5)", "amn_ir_label": "AMN confident labels (S9b)"}


def stage_table(work_space: str | Path) -> str:
    rows = []
    files = sorted(Path(work_space).glob("metrics_*.json"),
                   key=lambda p: (ORDER.index(p.stem[8:]) if p.stem[8:] in ORDER else len(ORDER), p.stem))
    for path in files:
        m = json.loads(path.read_text())
        s = m.get("scores", {})
        if path.stem == "metrics_cam" and "all_building_baseline_iou" in m:  # the bar the seed CAM must clear
            rows.append(all_building_row(m))
        if "building_iou" in s:
            rows.append(f"| {m.get('stage', path.stem)} | {m.get('tiles', '')} | {m.get('threshold', '')} | "
                        f"{s['building_iou']:.4f} | {s['f1']:.4f} | {s['precision']:.4f} | {s['recall']:.4f} |")
        elif "coverage" in m:  # confident-label stages: coverage and per-class precision, no IoU
            bp, gp = m.get("building_precision"), m.get("background_precision")
            prec = "n/a" if bp is None else f"bld {bp:.4f} / bg {gp:.4f}"
            rows.append(f"| {LABEL_STAGES.get(path.stem[8:], path.stem)} | {m.get('positives', '')} | "
                        f"coverage {m['coverage']:.3f} | | | {prec} | |")
    head = ("| stage | tiles | threshold | building IoU | F1 | precision | recall |\n"
            "|---|---|---|---|---|---|---|")
    if not rows:
        return f"(no metrics_*.json in {work_space})"
    ratio = pseudo_to_gt_ratio(work_space)
    tail = [] if ratio is None else [f"\nDeepLabV3+ on pseudo masks / on ground truth, building IoU: {ratio:.3f}"]
    return "\n".join([head, *rows, *tail])


def all_building_row(m: dict) -> str:
    """The row of the trivial map that calls every pixel of the positives building, from the seed-CAM
    evaluation's metrics (metrics_cam.json)."""
    iou = m["all_building_baseline_iou"]
    f1 = 2 * iou / (1 + iou)  # precision = IoU = the building fraction, recall = 1
    return f"| predict \"building\" everywhere | {m.get('tiles', '')} | | {iou:.4f} | {f1:.4f} | {iou:.4f} | 1.0000 |"


def pseudo_to_gt_ratio(work_space: str | Path) -> float | None:
    """Building IoU of DeepLabV3+ trained on pseudo masks over the same network trained on ground truth
    (metrics_seg.json / metrics_seg_gt.json, as script/train_segmentation.sh writes them), or None."""
    paths = [Path(work_space) / f"metrics_{name}.json" for name in ("seg", "seg_gt")]
    if not all(p.is_file() for p in paths):
        return None
    weak, full = (json.loads(p.read_text())["scores"]["building_iou"] for p in paths)
    return weak / full if full > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work_space", type=str, default="result_rrdsd", help="folder holding metrics_*.json")
    print(stage_table(parser.parse_args().work_space))


if __name__ == "__main__":
    main()
