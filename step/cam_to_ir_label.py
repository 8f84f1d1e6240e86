"""S5: confident {0, 1, 255} labels from the BAC maps with a dense CRF (SPEC S5).

Reads:  --train_list tiles under <voc12_root>/JPEGImages (raw uint8 RGB, no normalisation);
        <lpcam_out_dir>/<name>.npy `high_res[0]` for every positive (S3 output); --gt_dir masks for the
        summary only, when they are there.
Writes: <ir_label_out_dir>/<name>.png, uint8 HxW in {0, 1, 255} (1 building, 0 background, 255 ignore),
        and <name>_palette.png (P mode) for viewing; negatives get all zeros (confident background).
        <work_space>/metrics_ir_label.json: tiles, positives, coverage and, with ground truth, the
        precision of confident building / background pixels over the positives.
Label: fg = CRF(1[m > --conf_fg_thres]), bg = CRF(1[m > --conf_bg_thres]); 1 where fg, 0 where neither,
255 elsewhere (misc.crf.confident_label). Thresholds 0.25 / 0.15 for BAC maps (SPEC item 17).

`make_ir_labels` is the whole stage without `args`; `amn_cam_to_ir_label` (SPEC S9) calls it with the AR
maps, channel 1 and thresholds 0.45 / 0.15, and also writes zeros for negatives (SPEC item 18).
The CRF runs in args.pool_workers processes per rank (--num_workers, or the rank's cores) (forkserver); under torchrun each rank takes its share of the list.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import multiprocessing as mp
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from misc import fileio, imutils
from misc.crf import CRF_PARAMS, confident_label, label_quality, quality_scores
from misc.errors import UserError
from misc.pyutils import Timer, format_duration, progress

# Modules that import torch (step.common, misc.torchutils, voc12.dataloader) are imported inside the
# functions that need them: the CRF worker processes import this module and never need torch.

log = logging.getLogger(__name__)
TAG = "S5 cam_to_ir_label"
COUNT_KEYS = ("pixels", "building", "background", "building_correct", "background_correct")


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


def run(args: argparse.Namespace) -> None:
    from misc.torchutils import runtime
    from step.common import load_split

    split = load_split(args, "train_list", decode=False)
    summary = make_ir_labels(split.names, split.cls_labels, split.image_paths, args.lpcam_out_dir,
                             args.ir_label_out_dir, channel=0, fg_thres=args.conf_fg_thres,
                             bg_thres=args.conf_bg_thres, num_workers=args.pool_workers, gt_dir=args.gt_dir,
                             resume=args.resume, map_stage="S3 (--make_lpcam_pass True)", tag=TAG)
    if runtime().is_main:
        fileio.save_json(Path(args.work_space) / "metrics_ir_label.json", summary)


def make_ir_labels(names: Sequence[str], cls_labels: Mapping[str, int], image_paths: Mapping[str, Path],
                   map_dir: str | Path, out_dir: str | Path, *, channel: int, fg_thres: float, bg_thres: float,
                   num_workers: int, gt_dir: str | Path | None = None, resume: bool = True,
                   map_stage: str = "the stage that writes the maps", tag: str = TAG) -> dict:
    """Confident labels for every tile of `names`; returns the summary (all ranks' counts summed).

    Positives read `high_res[channel]` of <map_dir>/<name>.npy, negatives get all zeros. Outputs made
    from the same maps, images and settings are kept when `resume` is true (only counted again).
    """
    from misc.torchutils import runtime, shard
    from step.common import inference_names, reusable_outputs

    rt, timer = runtime(), Timer()
    map_dir, out_dir = Path(map_dir), Path(out_dir)
    positives = [n for n in names if cls_labels[n] == 1]
    map_paths = {n: map_dir / f"{n}.npy" for n in positives}
    fingerprint = _fingerprint(names, image_paths, map_paths, map_dir, channel, fg_thres, bg_thres, map_stage)
    if rt.is_main and not _same_stamp(out_dir, fingerprint, resume):
        _drop_outputs(out_dir, names)  # a rerun must never mix labels from other inputs
    done = reusable_outputs(out_dir, fingerprint, resume, suffix=".png") & set(names)
    gt_paths = _gt_paths(positives, gt_dir, tag)

    def tile(name: str, reuse: bool) -> Tile:
        return Tile(name, Path(image_paths[name]), map_paths.get(name), gt_paths.get(name), reuse)

    tiles = ([tile(n, False) for n in inference_names(names, done)]  # this rank's share
             + [tile(n, True) for n in shard([n for n in names if n in done], rt.rank, rt.world_size)])
    job = LabelJob(out_dir, channel, fg_thres, bg_thres, map_stage)
    counts = _sum_over_ranks(_label_tiles(job, tiles, num_workers, tag, show=rt.is_main))
    summary = _summary(counts, names, positives, done, gt_paths, job, map_dir, timer.elapsed, tag)
    _log_summary(summary, tag)
    return summary


def _label_tiles(job: LabelJob, tiles: Sequence[Tile], num_workers: int, tag: str, show: bool) -> Counter:
    """Run `_label_tile` over `tiles` in a process pool (in this process for one worker); sum the counts."""
    total: Counter = Counter()
    work = functools.partial(_label_tile, job)
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
        pool = ProcessPoolExecutor(min(num_workers, len(tiles)), mp_context=mp.get_context(method))
        try:
            for counts in pool.map(work, tiles, chunksize=2):
                total.update(counts)
                bar.update(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on error, do not finish the queued tiles first
    finally:
        bar.close()  # before an error message, so that stays the last line
    return total


def _label_tile(job: LabelJob, tile: Tile) -> dict[str, int]:
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
    gt = imutils.gt_to_binary(imutils.read_mask(tile.gt_path)) if tile.gt_path is not None else None
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
    from PIL import Image

    with Image.open(path) as img:
        return img.height, img.width


def _fingerprint(names: Sequence[str], image_paths: Mapping[str, Path], map_paths: Mapping[str, Path],
                 map_dir: Path, channel: int, fg_thres: float, bg_thres: float, map_stage: str) -> dict:
    """Settings plus digests of (name, size, mtime) of every image and map; a missing map is an error."""
    def digest(paths: Iterable[tuple[str, Path]], missing: str) -> str:
        sha = hashlib.sha256()
        for name, path in paths:
            try:
                stat = Path(path).stat()
            except FileNotFoundError:
                raise UserError(missing.format(name=name, path=path)) from None
            sha.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        return sha.hexdigest()

    return {"map_dir": str(map_dir.resolve()), "channel": channel, "conf_fg_thres": fg_thres,
            "conf_bg_thres": bg_thres, "crf": CRF_PARAMS, "tiles": len(names),
            "maps_sha256": digest(map_paths.items(), "{path} is missing for the listed positive {name!r}; "
                                  f"run {map_stage} first, or point the map folder at its output"),
            "images_sha256": digest(((n, image_paths[n]) for n in names), "image {path} of {name!r} disappeared")}


def _same_stamp(out_dir: Path, fingerprint: dict, resume: bool) -> bool:
    stamp = out_dir / ".source.json"
    if not resume or not stamp.is_file():
        return False
    return json.loads(stamp.read_text()) == json.loads(json.dumps(fingerprint))


def _drop_outputs(out_dir: Path, names: Iterable[str]) -> None:
    """Delete labels left by a run with other inputs, so an interrupted rerun cannot reuse them."""
    if out_dir.is_dir():
        for name in names:
            (out_dir / f"{name}.png").unlink(missing_ok=True)
            (out_dir / f"{name}_palette.png").unlink(missing_ok=True)


def _gt_paths(positives: Sequence[str], gt_dir: str | Path | None, tag: str) -> dict[str, Path]:
    """Ground-truth masks of the positives, if every one is there; else none (the summary skips precision)."""
    if gt_dir is None or not Path(gt_dir).is_dir():
        return {}
    paths = {n: Path(gt_dir) / f"{n}.png" for n in positives}
    missing = [n for n, p in paths.items() if not p.is_file()]
    if missing:
        log.warning("[%s] %d of %d positives have no mask in %s (first: %s); precision not reported",
                    tag, len(missing), len(paths), gt_dir, missing[0])
        return {}
    return paths


def _sum_over_ranks(counts: Counter) -> Counter:
    import torch

    from misc.torchutils import runtime

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return counts
    vec = torch.tensor([counts.get(k, 0) for k in COUNT_KEYS] + [int("building_correct" in counts)],
                       dtype=torch.int64, device=runtime().device)
    torch.distributed.all_reduce(vec)
    total = Counter(dict(zip(COUNT_KEYS, vec.tolist())))
    if vec[-1].item() == 0:  # no rank had ground truth
        del total["building_correct"], total["background_correct"]
    return total


def _summary(counts: Counter, names: Sequence[str], positives: Sequence[str], done: set[str],
             gt_paths: Mapping[str, Path], job: LabelJob, map_dir: Path, seconds: float, tag: str) -> dict:
    made = len(names) - len(done)
    full = {k: counts.get(k, 0) for k in COUNT_KEYS[:3]} | {k: counts[k] for k in COUNT_KEYS[3:] if k in counts}
    return {"stage": tag, "map_dir": str(map_dir), "out_dir": str(job.out_dir), "channel": job.channel,
            "conf_fg_thres": job.fg_thres, "conf_bg_thres": job.bg_thres, "tiles": len(names),
            "positives": len(positives), "reused": len(done), "ground_truth": bool(gt_paths),
            "scores_over": "positives (negatives are all confident background)",
            **quality_scores(full), "counts": full, "wall_s": round(seconds, 2),
            "img_per_s": round(made / seconds, 3) if seconds > 0 else None}


def _log_summary(s: dict, tag: str) -> None:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    quality = (f"precision building {pct(s['building_precision'])} background {pct(s['background_precision'])}"
               if "building_precision" in s else "precision n/a (no ground truth)")
    log.info("[%s] %d tiles (%d positives, %d reused): coverage %s (building %s, background %s), %s; "
             "in %s (%.2f img/s) -> %s", tag, s["tiles"], s["positives"], s["reused"], pct(s["coverage"]),
             pct(s["building_fraction"]), pct(s["background_fraction"]), quality, format_duration(s["wall_s"]),
             s["img_per_s"] or 0.0, s["out_dir"])
