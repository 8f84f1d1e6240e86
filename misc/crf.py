"""Dense CRF and confident labels: the maths of S5 (and S9b), and the process pool that labels tiles.

`confident_label` turns a building map into a {0, 1, 255} label: building where the CRF of the
strict mask says building, background where even the CRF of the loose mask says background, and
ignore (255) in between. `label_quality` counts how much of a label is confident and how much of it
agrees with the ground truth, as integers that add up over tiles.
"""
from __future__ import annotations

import functools
import multiprocessing as mp
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_labels

from misc import fileio, imutils
from misc.errors import UserError
from misc.pyutils import exit_with, progress

from misc.imutils import IGNORE

# The reference's CRF settings; BAC-AR-Net's bilateral term differs from IRN's 50/10.
CRF_PARAMS = {"t": 10, "gt_prob": 0.7, "gauss_sxy": 3, "gauss_compat": 3,
              "bi_sxy": 60, "bi_srgb": 5, "bi_compat": 5}


def crf_inference_label(img: np.ndarray, labels: np.ndarray, n_labels: int = 2, t: int = 10,
                        gt_prob: float = 0.7, gauss_sxy: float = 3, gauss_compat: float = 3,
                        bi_sxy: float = 60, bi_srgb: float = 5, bi_compat: float = 5) -> np.ndarray:
    """Dense-CRF refinement of a hard label map (reference `imutils.crf_inference_label`).

    Args:
        img: uint8 HxWx3 RGB image, not normalised.
        labels: HxW integer map with values in [0, n_labels).
        t: mean-field iterations.
        gt_prob: unary confidence in the given label (the others share 1 - gt_prob).

    Returns:
        uint8 HxW: the argmax of the CRF marginals.
    """
    height, width = labels.shape
    if img.shape[:2] != (height, width) or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image {img.shape} does not match labels {labels.shape} (expected HxWx3)")
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(unary_from_labels(labels.astype(np.int64), n_labels, gt_prob=gt_prob, zero_unsure=False))
    crf.addPairwiseGaussian(sxy=gauss_sxy, compat=gauss_compat)
    # a writable C-contiguous copy: pydensecrf rejects read-only buffers (e.g. np.asarray of a PIL image)
    crf.addPairwiseBilateral(sxy=bi_sxy, srgb=bi_srgb, rgbim=np.array(img, dtype=np.uint8, order="C"),
                             compat=bi_compat)
    q = np.asarray(crf.inference(t), dtype=np.float32).reshape(n_labels, height, width)
    return np.argmax(q, axis=0).astype(np.uint8)


def confident_label(img: np.ndarray, building_map: np.ndarray, fg_thres: float, bg_thres: float) -> np.ndarray:
    """S5: fg = CRF(1[m > t_fg]), bg = CRF(1[m > t_bg]); 1 where fg = 1, 255 where fg = 0,
    then 0 where fg + bg = 0. A pixel equal to a threshold counts as below it (the reference pads a
    constant background plane and takes argmax, so ties go to background).

    Returns:
        uint8 HxW with values in {0, 1, 255}.
    """
    fg = crf_inference_label(img, (building_map > fg_thres).astype(np.uint8))
    bg = crf_inference_label(img, (building_map > bg_thres).astype(np.uint8))
    label = np.where(fg == 1, 1, IGNORE).astype(np.uint8)
    label[(fg == 0) & (bg == 0)] = 0
    return label


def label_quality(label: np.ndarray, gt: np.ndarray | None = None) -> dict[str, int]:
    """Pixel counts of one confident label; sum them over tiles (e.g. with `collections.Counter`).

    Keys: `pixels`, `building` and `background` (confident pixels of each class) and, when the
    {0, 1} ground truth `gt` is given, `building_correct` and `background_correct` with their denominators
    `building_scored` and `background_scored` (the same as `building` and `background` here; summed over
    only the tiles with ground truth when some have none).
    """
    building, background = label == 1, label == 0
    counts = {"pixels": int(label.size), "building": int(building.sum()), "background": int(background.sum())}
    if gt is not None:
        if gt.shape != label.shape:
            raise ValueError(f"label {label.shape} and ground truth {gt.shape} differ in size")
        counts["building_correct"] = int((building & (gt == 1)).sum())
        counts["background_correct"] = int((background & (gt == 0)).sum())
        counts["building_scored"], counts["background_scored"] = counts["building"], counts["background"]
    return counts


def quality_scores(counts: Mapping[str, int]) -> dict[str, float | None]:
    """Coverage (confident fraction), class fractions and, with ground-truth counts, the precision of
    confident building and background pixels. A ratio with nothing to count is None."""
    def ratio(num: int, den: int) -> float | None:
        return num / den if den else None

    out = {"coverage": ratio(counts["building"] + counts["background"], counts["pixels"]),
           "building_fraction": ratio(counts["building"], counts["pixels"]),
           "background_fraction": ratio(counts["background"], counts["pixels"])}
    if "building_correct" in counts:
        out["building_precision"] = ratio(counts["building_correct"], counts.get("building_scored", counts["building"]))
        out["background_precision"] = ratio(counts["background_correct"],
                                            counts.get("background_scored", counts["background"]))
    return out


# --- confident labels of many tiles in a process pool (S5, S9b) ---------------------------------------

@dataclass(frozen=True)
class LabelJob:
    """What every tile of one run shares (sent to the worker processes)."""
    out_dir: Path
    channel: int
    fg_thres: float
    bg_thres: float
    map_stage: str


@dataclass(frozen=True)
class Tile:
    name: str
    image: Path
    map_path: Path | None   # None for a negative: all-zero label
    gt_path: Path | None    # counted in the summary when given (positives only)
    reuse: bool = False     # the label exists from an earlier run with the same inputs: only count it


def label_tiles(job: LabelJob, tiles: Sequence[Tile], num_workers: int, tag: str, show: bool) -> Counter:
    """Run `_label_tile` over `tiles` in a process pool (in this process for one worker); sum the counts."""
    total: Counter = Counter()
    work = functools.partial(label_tile, job)
    bar = progress(None, total=len(tiles), desc=tag, disable=not show)
    try:
        if num_workers <= 1 or len(tiles) <= 1:
            for counts in map(work, tiles):
                total.update(counts)
                bar.update(1)
            return total
        # forkserver/spawn: the parent holds torch (and maybe CUDA or gloo threads), so never plain fork.
        # An executor rather than mp.Pool: a worker that dies (OOM kill) raises BrokenProcessPool instead
        # of hanging; `map` yields in order and re-raises a worker's exception (a UserError stays one).
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        # the workers are the fork server's children, so they watch this process and end with it (kill -9 too)
        pool = ProcessPoolExecutor(min(num_workers, len(tiles)), mp_context=mp.get_context(method),
                                   initializer=exit_with, initargs=(os.getpid(),))
        try:
            for counts in pool.map(work, tiles, chunksize=2):
                total.update(counts)
                bar.update(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on error, do not finish the queued tiles first
    finally:
        bar.close()  # before an error message, so that stays the last line
    return total


def label_tile(job: LabelJob, tile: Tile) -> dict[str, int]:
    """Write (or, when reused, read back) one tile's label; return its quality counts (positives only)."""
    out = job.out_dir / f"{tile.name}.png"
    if tile.reuse:
        label = imutils.read_mask(out)
    elif tile.map_path is None:
        label = np.zeros(_image_size(tile.image), dtype=np.uint8)
    else:
        img = imutils.read_image(tile.image)
        label = confident_label(img, _building_map(job, tile, img.shape[:2]), job.fg_thres, job.bg_thres)
    if not tile.reuse:
        # the palette first: the label file marks the tile as done for a resumed run
        fileio.save_png(job.out_dir / f"{tile.name}_palette.png", label, palette=True)
        fileio.save_png(out, label)
    if tile.map_path is None:
        return {}
    gt = imutils.read_gt(tile.gt_path) if tile.gt_path is not None else None
    if gt is not None and gt.shape != label.shape:
        raise UserError(f"ground truth {tile.gt_path} is {gt.shape[1]}x{gt.shape[0]} but {out} is "
                        f"{label.shape[1]}x{label.shape[0]}; check --gt_dir")
    return label_quality(label, gt)


def _building_map(job: LabelJob, tile: Tile, size: tuple[int, int]) -> np.ndarray:
    maps = fileio.load_npy_dict(tile.map_path)
    high_res = maps.get("high_res")
    if high_res is None or high_res.ndim != 3 or high_res.shape[0] <= job.channel:
        shape = None if high_res is None else high_res.shape
        raise UserError(f"{tile.map_path} has high_res of shape {shape}; expected [C, H, W] with channel "
                        f"{job.channel}; rerun {job.map_stage}")
    if high_res.shape[1:] != tuple(size):
        raise UserError(f"{tile.map_path} is {high_res.shape[2]}x{high_res.shape[1]} but image {tile.image} is "
                        f"{size[1]}x{size[0]}; the maps were made from other images, rerun {job.map_stage}")
    return high_res[job.channel].astype(np.float32)


def _image_size(path: Path) -> tuple[int, int]:
    return imutils.image_size(path)
