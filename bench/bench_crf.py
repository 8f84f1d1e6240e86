"""Benchmark of S5 (`step.cam_to_ir_label.make_ir_labels`): positive tiles per second with 1 and 2 workers.

    .venv/bin/python bench/bench_crf.py [--tiles 48] [--workers 1,2] [--root Dataset/demo | --synthetic]

Each positive costs two dense CRFs (t = 10) plus PNG I/O. Tiles are 256x256: from --root (an RRDSD
layout, default Dataset/demo when it exists; maps are its blurred ground truth plus noise) or synthetic
(textured background, a few coloured roofs, a blurred map of the roofs). Prints a markdown table; the
first pool's start-up (the forkserver imports __main__, hence torch, once per run) is timed
separately on a 2-tile warm-up; later pools fork from the running server.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from misc import fileio, imutils  # noqa: E402
from misc.crf import LabelJob, Tile, crf_inference_label, label_tiles, quality_scores  # noqa: E402

SIZE = 256


def synthetic_tile(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A textured 256x256 RGB tile with 2-5 rectangular roofs, and its {0,1} mask."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    base = rng.uniform(60, 140, 3) + 20 * np.sin(xx[..., None] / rng.uniform(20, 60)) * np.cos(yy[..., None] / 40)
    img = base + rng.normal(0, 8, (SIZE, SIZE, 3))
    mask = np.zeros((SIZE, SIZE), np.uint8)
    while mask.mean() < 0.3:
        h, w = rng.integers(30, 110, 2)
        top, left = rng.integers(0, SIZE - h), rng.integers(0, SIZE - w)
        mask[top:top + h, left:left + w] = 1
        img[top:top + h, left:left + w] = rng.uniform(150, 240, 3) + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8), mask


def fake_map(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A BAC-like map: blurred ground truth, max-normalised, with noise; float32 [1, H, W]."""
    m = ndimage.gaussian_filter(mask.astype(np.float32), 8) + rng.normal(0, 0.05, mask.shape)
    m = np.clip(m, 0, None)
    return (m / (m.max() + 1e-5))[None].astype(np.float32)


def build(root: Path, data_root: Path | None, tiles: int) -> tuple[list[str], dict[str, Path], Path]:
    rng = np.random.default_rng(0)
    images, maps = root / "images", root / "maps"
    images.mkdir(parents=True)
    names, paths = [], {}
    if data_root is not None:
        gt_dir = data_root / "SegmentationClassAug"
        for name in (data_root / "train_aug_building.txt").read_text().split()[:tiles]:
            path = imutils.find_image(data_root / "JPEGImages", name)
            mask = imutils.read_gt(gt_dir / f"{name}.png")
            fileio.save_npy_dict(maps / f"{name}.npy", {"keys": np.zeros(1, np.int64), "high_res": fake_map(mask, rng)})
            names.append(name)
            paths[name] = path
        return names, paths, gt_dir
    gt_dir = root / "gt"
    for i in range(tiles):
        name = f"tile_{i:04d}"
        img, mask = synthetic_tile(rng)
        fileio.save_png(images / f"{name}.png", img)
        fileio.save_png(gt_dir / f"{name}.png", mask * 255)
        fileio.save_npy_dict(maps / f"{name}.npy", {"keys": np.zeros(1, np.int64), "high_res": fake_map(mask, rng)})
        names.append(name)
        paths[name] = images / f"{name}.png"
    return names, paths, gt_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiles", type=int, default=48, help="positive tiles per run")
    p.add_argument("--workers", type=str, default="1,2", help="worker counts to time, comma-separated")
    p.add_argument("--root", type=str, default=None, help="RRDSD-layout dataset [Dataset/demo if present, else synthetic]")
    p.add_argument("--synthetic", action="store_true", help="synthetic tiles even when Dataset/demo exists")
    args = p.parse_args()
    demo = Path(__file__).resolve().parents[1] / "Dataset" / "demo"
    data_root = Path(args.root) if args.root else (demo if (demo / "train_aug_building.txt").is_file() else None)
    data_root = None if args.synthetic else data_root
    with tempfile.TemporaryDirectory() as tmp:
        names, paths, gt_dir = build(Path(tmp), data_root, args.tiles)
        img = imutils.read_image(paths[names[0]])
        start = time.perf_counter()
        for _ in range(5):
            crf_inference_label(img, np.zeros(img.shape[:2], np.uint8))
        one_crf = (time.perf_counter() - start) / 5
        def timed(tile_names: list[str], workers: int, out: str) -> tuple[float, dict]:
            job = LabelJob(Path(tmp) / out, channel=0, fg_thres=0.25, bg_thres=0.15, map_stage="bench")
            tiles = [Tile(n, paths[n], Path(tmp) / "maps" / f"{n}.npy", gt_dir / f"{n}.png") for n in tile_names]
            start = time.perf_counter()
            counts = label_tiles(job, tiles, workers, "S5 CRF", show=True)
            return time.perf_counter() - start, quality_scores(dict(counts))

        worker_counts = [int(w) for w in args.workers.split(",")]
        # the first pool starts the forkserver, which imports __main__ (and so torch) once per run
        startup = timed(names[:2], max(worker_counts), "warmup")[0] if max(worker_counts) > 1 else 0.0
        rows = [(workers, *timed(names, workers, f"out_{workers}")) for workers in worker_counts]
    source = str(data_root) if data_root else "synthetic"
    print(f"\nS5 confident labels, {len(names)} positive {SIZE}x{SIZE} tiles ({source}); {os.cpu_count()} CPUs "
          f"({platform.machine()}, load average {os.getloadavg()[0]:.1f}); one CRF call {one_crf * 1000:.0f} ms; "
          f"first pool start-up {startup:.1f} s (not in the table)\n")
    from misc.hardware import machine_line

    print(machine_line("cpu") + "\n")
    print("| workers | wall (s) | positive tiles/s | speed-up | coverage |")
    print("|---:|---:|---:|---:|---:|")
    for workers, seconds, summary in rows:
        print(f"| {workers} | {seconds:.1f} | {len(names) / seconds:.2f} | {rows[0][1] / seconds:.2f}x "
              f"| {summary['coverage']:.3f} |")


if __name__ == "__main__":
    main()
