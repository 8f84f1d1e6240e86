"""The stage table: `python -m misc.report --work_space result_rrdsd` prints every metrics_*.json
written by the evaluation stages as one markdown table, in pipeline order."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = ["cam", "lpcam_mask", "ir_label", "amn_cam", "pseudo_mask", "seg"]


def stage_table(work_space: str | Path) -> str:
    rows = []
    files = sorted(Path(work_space).glob("metrics_*.json"),
                   key=lambda p: (ORDER.index(p.stem[8:]) if p.stem[8:] in ORDER else len(ORDER), p.stem))
    for path in files:
        m = json.loads(path.read_text())
        s = m.get("scores", {})
        if "building_iou" in s:
            rows.append(f"| {m.get('stage', path.stem)} | {m.get('tiles', '')} | {m.get('threshold', '')} | "
                        f"{s['building_iou']:.4f} | {s['f1']:.4f} | {s['precision']:.4f} | {s['recall']:.4f} |")
        elif "coverage" in s:
            rows.append(f"| {m.get('stage', path.stem)} | {m.get('tiles', '')} | coverage {s['coverage']:.3f} | "
                        f"| | building {s.get('building_precision', float('nan')):.4f} / "
                        f"background {s.get('background_precision', float('nan')):.4f} | |")
    head = ("| stage | tiles | threshold | building IoU | F1 | precision | recall |\n"
            "|---|---|---|---|---|---|---|")
    return "\n".join([head, *rows]) if rows else f"(no metrics_*.json in {work_space})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work_space", type=str, default="result_rrdsd", help="folder holding metrics_*.json")
    print(stage_table(parser.parse_args().work_space))


if __name__ == "__main__":
    main()
