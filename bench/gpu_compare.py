"""Compare two work spaces of the same pipeline settings: the maps, the label and mask PNGs and the stage
table (metrics_*.json), each against a stated tolerance. Used by bench/gpu_check.sh to hold a GPU run
against a CPU run, and a torchrun run against a single process.

    python bench/gpu_compare.py --ref result_gpu --other result_cpu --map_tol 0.01 --iou_tol 0.01 --mask_tol 0.01
    python bench/gpu_compare.py --ref result_gpu --other result_ddp --tables_only --iou_tol 0.10

Reads (never writes): <work_space>/{cam,lpcam_mask,amn_cam}/*.npy (their `high_res`, through
misc.fileio.load_npy_dict), <work_space>/{ir_label,pseudo_mask,seg}/*.png and <work_space>/metrics_*.json.
Prints one line per compared folder or metrics file, `PASS` or `FAIL` and the measured difference; exits
1 when any line fails, 0 otherwise. Both work spaces must hold the same tiles in every compared folder.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from misc import fileio, imutils  # noqa: E402
from misc.pyutils import nonneg_float  # noqa: E402

MAP_FOLDERS = ("cam", "lpcam_mask", "amn_cam")
MASK_FOLDERS = ("ir_label", "pseudo_mask", "seg")


def compare_maps(ref: Path, other: Path, tol: float) -> tuple[bool, str]:
    """Mean absolute difference of `high_res` over every pixel of every map (maps are in [0, 1])."""
    names = _same_names(ref, other, "*.npy")
    if isinstance(names, str):
        return False, names
    total, pixels, worst = 0.0, 0, 0.0
    for name in names:
        a = fileio.load_npy_dict(ref / name)["high_res"].astype(np.float64)
        b = fileio.load_npy_dict(other / name)["high_res"].astype(np.float64)
        if a.shape != b.shape:
            return False, f"{name}: shape {a.shape} against {b.shape}"
        diff = np.abs(a - b)
        total, pixels, worst = total + float(diff.sum()), pixels + diff.size, max(worst, float(diff.max()))
    mean = total / max(pixels, 1)
    return mean <= tol, f"{len(names)} maps, mean |diff| {mean:.5f} (tolerance {tol}), max |diff| {worst:.4f}"


def compare_masks(ref: Path, other: Path, tol: float) -> tuple[bool, str]:
    """Fraction of pixels whose label differs (palette PNGs: the index is the label)."""
    names = _same_names(ref, other, "*.png")
    if isinstance(names, str):
        return False, names
    differ, pixels = 0, 0
    for name in names:
        a, b = imutils.read_mask(ref / name), imutils.read_mask(other / name)
        if a.shape != b.shape:
            return False, f"{name}: shape {a.shape} against {b.shape}"
        differ, pixels = differ + int((a != b).sum()), pixels + a.size
    share = differ / max(pixels, 1)
    return share <= tol, f"{len(names)} masks, {share:.5f} of the pixels differ (tolerance {tol})"


def compare_metrics(ref: Path, other: Path, tol: float) -> list[tuple[bool, str]]:
    """Each metrics file of `ref`: building IoU (or a confident-label stage's coverage) within `tol`."""
    results = []
    for path in sorted(ref.glob("metrics_*.json")):
        twin = other / path.name
        if not twin.is_file():
            results.append((False, f"{path.name}: missing in {other}"))
            continue
        a, b = json.loads(path.read_text()), json.loads(twin.read_text())
        key = "building_iou" if "building_iou" in a.get("scores", {}) else "coverage" if "coverage" in a else None
        if key is None:
            continue
        va = a["scores"][key] if key == "building_iou" else a[key]
        vb = b.get("scores", {}).get(key) if key == "building_iou" else b.get(key)
        if vb is None:
            results.append((False, f"{path.name}: no {key} in {twin}"))
            continue
        results.append((abs(va - vb) <= tol, f"{path.name}: {key} {va:.4f} against {vb:.4f} (tolerance {tol})"))
    if not results:
        results.append((False, f"no metrics_*.json with scores in {ref}"))
    return results


def _same_names(ref: Path, other: Path, pattern: str) -> list[str] | str:
    """The files matching `pattern` in both folders, or why they cannot be compared."""
    a = sorted(p.name for p in ref.glob(pattern) if not p.stem.endswith("_palette"))
    b = sorted(p.name for p in other.glob(pattern) if not p.stem.endswith("_palette"))
    if not a:
        return f"no {pattern} in {ref}"
    if a != b:
        return f"{len(a)} files in {ref}, {len(b)} in {other}; first difference: {sorted(set(a) ^ set(b))[:1]}"
    return a


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", type=Path, required=True, help="the reference work space")
    p.add_argument("--other", type=Path, required=True, help="the work space held against it")
    p.add_argument("--map_tol", type=nonneg_float, default=0.01, help="mean |difference| of the maps")
    p.add_argument("--mask_tol", type=nonneg_float, default=0.01, help="share of label/mask pixels that may differ")
    p.add_argument("--iou_tol", type=nonneg_float, default=0.01, help="|difference| of each stage's building IoU")
    p.add_argument("--tables_only", action="store_true", help="compare the metrics files only")
    a = p.parse_args(argv)
    results = []
    if not a.tables_only:
        for folder in MAP_FOLDERS:
            if (a.ref / folder).is_dir():
                ok, text = compare_maps(a.ref / folder, a.other / folder, a.map_tol)
                results.append((ok, f"{folder}/: {text}"))
        for folder in MASK_FOLDERS:
            if (a.ref / folder).is_dir():
                ok, text = compare_masks(a.ref / folder, a.other / folder, a.mask_tol)
                results.append((ok, f"{folder}/: {text}"))
    results += compare_metrics(a.ref, a.other, a.iou_tol)
    for ok, text in results:
        print(f"{'PASS' if ok else 'FAIL'} {text}")
    failed = sum(not ok for ok, _ in results)
    print(f"gpu_compare: {a.other} against {a.ref}: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
